/**
 * The model check of the Galera recovery rules (test/overlays/galera-recovery/test_model.py):
 * every sequence of Galera's events up to a depth, for 3 and 5 servers and both policies, each
 * boot decided by the program the nodes run. Each case prints how many states and sequences it checked.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pythonTests } from '../support/python-tests.js';

await pythonTests(path.join(path.dirname(fileURLToPath(import.meta.url)), 'galera-recovery'), 'test_model', 240_000);
