"""Facts about the machine ironforge runs on: accelerator, tools, libguestfs."""
