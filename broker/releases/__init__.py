"""The release path: decide at this instant, fetch from the source, filter, log, answer."""
