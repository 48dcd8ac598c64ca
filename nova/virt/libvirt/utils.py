"""Which machine type a guest gets, under the names the libvirt driver uses.

The rules live in ``nova.machine_type``, below the objects layer, so that
the online data migration in ``nova.objects`` resolves with the very same
function as a spawn without importing the driver (an import cycle before).
"""

from nova.machine_type import ARCH_IMAGE_PROPERTY  # noqa: F401
from nova.machine_type import DEFAULT_MACHINE_TYPES  # noqa: F401
from nova.machine_type import get_default_machine_type  # noqa: F401
from nova.machine_type import get_guest_arch  # noqa: F401
from nova.machine_type import get_machine_type  # noqa: F401
from nova.machine_type import MACHINE_TYPE_IMAGE_PROPERTY  # noqa: F401
from nova.machine_type import MACHINE_TYPE_SYSMETA_KEY  # noqa: F401
