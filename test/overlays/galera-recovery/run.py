"""
Runs the recovery program's Python tests and prints one JSON line per test: its id, whether it
passed, and what it printed or why it failed. test/overlays/galera-recovery.test.ts reads these
lines, so that `npm test` counts each Python test as its own.
"""
import io
import json
import os
import sys
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class Lines(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.out = io.StringIO()

    def startTest(self, test):
        super().startTest(test)
        self.out = io.StringIO()
        sys.stdout = self.out

    def stopTest(self, test):
        sys.stdout = sys.__stdout__
        super().stopTest(test)

    def emit(self, test, ok, detail=""):
        sys.stdout = sys.__stdout__
        print(json.dumps({"id": test.id(), "ok": ok, "detail": (self.out.getvalue() + detail).strip()}), flush=True)

    def addSuccess(self, test):
        self.emit(test, True)

    def addFailure(self, test, err):
        self.emit(test, False, self._exc_info_to_string(err, test))

    def addError(self, test, err):
        self.emit(test, False, self._exc_info_to_string(err, test))


if __name__ == "__main__":
    names = sys.argv[1:] or ["test_decision", "test_model"]
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    result = Lines()
    suite.run(result)
    sys.exit(0 if result.wasSuccessful() else 1)
