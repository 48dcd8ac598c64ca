"""How the Galera copy sizes its chunks (nova.db.table_copy)."""

import testtools

from nova.db import table_copy


class NextChunkSizeTests(testtools.TestCase):

    def test_a_chunk_on_target_keeps_its_size(self):
        self.assertEqual(400, table_copy.next_chunk_size(
            400, table_copy.CHUNK_SECONDS))

    def test_a_slow_chunk_makes_the_next_smaller_by_half_at_most(self):
        seconds = table_copy.CHUNK_SECONDS
        self.assertEqual(800, table_copy.next_chunk_size(1000, 1.25 * seconds))
        self.assertEqual(500, table_copy.next_chunk_size(1000, 8 * seconds))

    def test_a_fast_chunk_makes_the_next_larger_by_double_at_most(self):
        seconds = table_copy.CHUNK_SECONDS
        self.assertEqual(150, table_copy.next_chunk_size(100, seconds / 1.5))
        self.assertEqual(200, table_copy.next_chunk_size(100, 0))

    def test_sizes_stay_within_the_bounds(self):
        self.assertEqual(table_copy.COPY_CHUNK, table_copy.next_chunk_size(
            table_copy.COPY_CHUNK, 0))
        self.assertEqual(table_copy.MIN_CHUNK, table_copy.next_chunk_size(
            table_copy.MIN_CHUNK, 60))
