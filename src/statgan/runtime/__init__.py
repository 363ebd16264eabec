"""Process-wide helpers with no knowledge of GANs: seeding (one scheme), validation of user-given
values (one ``check_*`` family), the compute device, and several processes under torchrun.

Everything else in statgan may import from here; nothing here imports the rest of statgan except
:mod:`statgan.errors`.
"""
