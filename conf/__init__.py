"""dbn's Hydra configs, shipped as the package ``dbn.conf`` (``config_path="pkg://dbn.conf"``).

Importing it registers the one resolver the configs use, ``${dbn.or:a,b}``: ``a``
unless it is null, else ``b`` (OmegaConf's ``oc.select`` falls back only for
missing keys, not null ones). Hydra imports this package before it composes.
"""

from omegaconf import OmegaConf

if not OmegaConf.has_resolver("dbn.or"):
    OmegaConf.register_new_resolver("dbn.or", lambda value, default: default if value is None else value)
