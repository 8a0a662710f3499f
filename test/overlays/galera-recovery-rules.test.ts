/**
 * The Galera recovery decision as a table of cases, run against the program
 * the nodes run (test/overlays/galera-recovery/test_decision.py): every rule,
 * each policy, the sequences of issue 18, the boot clock and the history file.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pythonTests } from '../support/python-tests.js';

await pythonTests(path.join(path.dirname(fileURLToPath(import.meta.url)), 'galera-recovery'), 'test_decision', 60_000);
