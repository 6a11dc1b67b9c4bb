"""rlbench's configs: this folder ships inside the package as ``rlbench.conf``.

Edit the yaml files here; ``rlbench.cli.CONF_DIR`` points at this folder in a checkout or an
editable install, and at the copy in site-packages once rlbench is installed from a wheel.
"""
