"""Request/response over topics: the requester (client side) and the responder (a route)."""
