"""ImageMeta: the image an instance was built from, and its properties.

When an instance is built or rebuilt, every image property is copied into
its system metadata as ``image_<property>``; ``from_instance`` reads them
back, so the driver sees the image as it was when the instance got it.
"""

SYSMETA_IMAGE_PREFIX = 'image_'


class ImageMetaProps(dict):
    """Image properties (``hw_machine_type``, ``hw_architecture``, ...)."""


class ImageMeta:
    """An image: its id, name and properties."""

    def __init__(self, id=None, name=None, properties=None):
        self.id = id
        self.name = name
        self.properties = ImageMetaProps(properties or {})

    @classmethod
    def from_dict(cls, image):
        """Build from a Glance-style ``{'id': ..., 'properties': {...}}``."""
        image = image or {}
        return cls(id=image.get('id'), name=image.get('name'),
                   properties=image.get('properties'))

    @classmethod
    def from_instance(cls, instance):
        """Rebuild the image from the ``image_*`` keys of the instance."""
        props = {key[len(SYSMETA_IMAGE_PREFIX):]: value
                 for key, value in instance.system_metadata.items()
                 if key.startswith(SYSMETA_IMAGE_PREFIX)
                 and value is not None}
        return cls(id=instance.image_ref, properties=props)

    def to_system_metadata(self):
        """The ``image_*`` keys that record this image on an instance."""
        return {SYSMETA_IMAGE_PREFIX + key: str(value)
                for key, value in self.properties.items()
                if value is not None}

    def __repr__(self):
        return 'ImageMeta(id=%r, properties=%r)' % (self.id,
                                                    dict(self.properties))
