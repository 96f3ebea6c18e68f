"""Running the system on one machine: the official emulators, provisioning and the functions."""
