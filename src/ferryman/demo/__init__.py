"""The demo: four small services on an embedded broker in a temporary directory.

customers publishes Customer entities; orders keeps its own copy of them, asks pricing for
quotes (request/response) and emits OrderPlaced events; analytics handles the events in batches.
"""
