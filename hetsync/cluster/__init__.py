"""The Ray layer: how Ray is started or joined (`runtime`), the thin actors around the plain
objects of `hetsync.core` (`actors`), and the typed handles through which the driver and the
workers call them (`handles`). The only package that calls `.remote()`."""
