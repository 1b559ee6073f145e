"""The source tree stands alone: a lone `git clone` builds and tests, so no
tracked file may name a folder beside the repository."""
import os
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SourceTree(unittest.TestCase):
    def test_no_tracked_file_reaches_outside_the_repository(self):
        # git grep exits 1 when nothing matches, which is the answer we want.
        found = subprocess.run(["git", "-C", ROOT, "grep", "-n", "-I", "-e", r"\.\./shared", "--", "."],
                               capture_output=True, text=True)
        self.assertEqual((found.returncode, found.stdout), (1, ""))

    def test_the_reader_corpus_is_in_the_tree(self):
        files = subprocess.run(["git", "-C", ROOT, "ls-files", "data/ccid-readers"],
                               capture_output=True, text=True, check=True).stdout.split()
        self.assertIn("data/ccid-readers/descriptors.json", files)
        self.assertIn("data/ccid-readers/README.md", files)
        self.assertIn("data/ccid-readers/txt/supported_readers.txt", files)
        self.assertEqual(len([f for f in files if f.endswith(".txt") and "/txt/" in f and "extra_features" not in f
                              and not f.endswith("supported_readers.txt")]), 691)


if __name__ == "__main__":
    unittest.main()
