"""Enumerations shared by objects, configuration and the libvirt driver."""

import platform
import re


class Architecture:
    """Guest and host CPU architectures, as Nova names them."""

    AARCH64 = 'aarch64'
    ALPHA = 'alpha'
    ARMV6 = 'armv6'
    ARMV7 = 'armv7l'
    ARMV7B = 'armv7b'
    I686 = 'i686'
    MIPS = 'mips'
    MIPS64 = 'mips64'
    MIPSEL = 'mipsel'
    PPC = 'ppc'
    PPC64 = 'ppc64'
    PPC64LE = 'ppc64le'
    PPCLE = 'ppcle'
    RISCV64 = 'riscv64'
    S390 = 's390'
    S390X = 's390x'
    SPARC = 'sparc'
    SPARC64 = 'sparc64'
    X86_64 = 'x86_64'

    ALL = (AARCH64, ALPHA, ARMV6, ARMV7, ARMV7B, I686, MIPS, MIPS64, MIPSEL,
           PPC, PPC64, PPC64LE, PPCLE, RISCV64, S390, S390X, SPARC, SPARC64,
           X86_64)

    # Names other tools (dpkg, uname, image metadata) use for the same thing.
    _ALIASES = {
        'amd64': X86_64,
        'x64': X86_64,
        'arm64': AARCH64,
        'armv7': ARMV7,
        'armhf': ARMV7,
        'i386': I686,
        'i486': I686,
        'i586': I686,
        'x86': I686,
        'ppc64el': PPC64LE,
        'powerpc': PPC,
    }

    @classmethod
    def canonicalize(cls, name):
        """Return the canonical name of an architecture, or None if unknown."""
        if not name:
            return None
        name = name.strip().lower()
        name = cls._ALIASES.get(name, name)
        return name if name in cls.ALL else None

    @classmethod
    def from_host(cls):
        """The canonical architecture of the machine running this code."""
        return cls.canonicalize(platform.machine()) or platform.machine()


# A machine type as QEMU and libvirt spell it: letters, digits, '.', '_'
# and '-', starting with a letter or digit. Nothing else can reach domain
# XML, whatever the caller.
MACHINE_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MACHINE_TYPE_MAX_LEN = 255


def is_valid_machine_type(value):
    """True if value is syntactically a machine type (whether it exists
    is for the host to say)."""
    return (isinstance(value, str)
            and len(value) <= MACHINE_TYPE_MAX_LEN
            and MACHINE_TYPE_RE.fullmatch(value) is not None)
