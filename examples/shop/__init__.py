"""The shop: bastion's flagship example app (catalog now; cart, checkout and orders later)."""
