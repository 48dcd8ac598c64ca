"""The objects services and commands work with (see DESIGN section 9)."""

from nova.objects.cell_mapping import CellMapping  # noqa: F401
from nova.objects.cell_mapping import CellMappingList  # noqa: F401
from nova.objects.host_mapping import HostMapping  # noqa: F401
from nova.objects.image_meta import ImageMeta  # noqa: F401
from nova.objects.instance import Instance  # noqa: F401
from nova.objects.instance import InstanceList  # noqa: F401
from nova.objects.instance_mapping import InstanceMapping  # noqa: F401
from nova.objects.service import Service  # noqa: F401
from nova.objects.service import ServiceList  # noqa: F401
