"""The orders service: accepts PlaceOrder, records the order, announces OrderPlaced and
requests the charge."""
