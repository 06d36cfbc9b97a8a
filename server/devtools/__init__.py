"""Build-time developer tools run by the Makefile (never imported by the running server)."""
