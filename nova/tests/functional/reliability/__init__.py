"""Reliability and security (issue 7): races, crashes, outages, secrets.

Every test here runs the real console scripts (or the compute manager in
threads) against MariaDB and PostgreSQL and, where a domain matters, the
real libvirtd; outages use private servers of their own (servers.py), never
the shared ones.
"""
