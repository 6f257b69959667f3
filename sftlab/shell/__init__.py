"""What an operator meets over SSH: the server, CLISH texts, real bash on a pty, the jump server, routes."""
