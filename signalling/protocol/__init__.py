"""The client protocol: message parsing, the WebSocket app and its edge limits, rooms, and the Python client."""
