"""Device access: one small session interface, the shell ladder as data, one module that uses Fabric."""
