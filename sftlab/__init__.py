"""The lab: a simulated FMC pair, FTD fleet and jump server over real SSH, bash and TLS on loopback."""
