"""Sphinx configuration of the operator documentation.

Build with: sphinx-build -W -b html doc/source doc/build/html
"""

project = 'nova'
copyright = 'OpenStack Foundation'
extensions = []
master_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
