"""One scanner per resource kind; `guard.inventory.SCANNERS` maps kinds to them."""
