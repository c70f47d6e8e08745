"""`python3 -m bench`: server CPU per mutual-TLS connection and request, against openssl s_server."""
