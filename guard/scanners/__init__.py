"""One scanner per resource kind; each kind's registry entry (`guard.kinds`) names its own."""
