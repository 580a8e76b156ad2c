"""The shop: bastion's flagship example app (catalog, cart, checkout, orders, credits)."""
