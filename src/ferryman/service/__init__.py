"""The composition root: ``Service`` wires the runtime, request/response and stores together;
``run_services`` runs services until SIGTERM/SIGINT."""

from ferryman.service.core import Service
from ferryman.service.running import run_services

__all__ = ["Service", "run_services"]
