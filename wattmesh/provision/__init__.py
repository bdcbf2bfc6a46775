"""``wattmesh provision``: everything a neighbourhood needs, generated into one folder.

Keys come from the operating system's randomness only. Layout, roles and what the
broker's ACL allows: docs/provisioning.md. ``provision`` writes the files;
``_certs``, ``_configs``, ``_mosquitto_conf``, ``_layout`` and ``compose`` (the
Docker side: ``compose.yaml`` and ``.env``) are its pure parts.
"""

__all__ = ["compose", "provision"]
