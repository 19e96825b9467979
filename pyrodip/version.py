"""The version of pyrodip, kept in the results it writes.

>>> __version__
'0.3.0'
"""

__version__ = "0.3.0"
