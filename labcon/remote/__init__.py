"""Ways in from another process: the control socket server, RemoteSession client, wire format, spawn."""
