"""The Cisco tools on a device's PATH (sftunnel_status.pl, generate_certs.pl, pmtool) and what they do."""
