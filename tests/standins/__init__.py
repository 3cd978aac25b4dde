"""Stand-ins for the outside services Encore talks to: real servers on 127.0.0.1 that
enforce each service's documented contract, refusals included."""
