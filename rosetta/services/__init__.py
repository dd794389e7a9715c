"""The domain: the only code that writes and emits events. ``check_*`` validates, ``do_*`` acts."""
