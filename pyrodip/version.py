"""The version of pyrodip, kept in the results it writes.

>>> __version__
'0.2.0'
"""

__version__ = "0.2.0"
