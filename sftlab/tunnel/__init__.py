"""sftunnel: mutual TLS between each FMC and its peers, from the files on disk, with sftunneld's log lines."""
