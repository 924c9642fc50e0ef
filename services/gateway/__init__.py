"""Gateway: the single entry — routing to the services, the combined API documentation, the customer 360."""
