/**
 * The JSON Schema that editors use is generated from the loader's own schema:
 * a standard validator accepts every bundled profile and rejects a typo, and
 * the copy committed beside the profiles is current.
 */
import { test } from '../support/test.js';
import * as assert from 'uvu/assert';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { profileJsonSchema } from '../../src/profile/schema.js';

const PROFILES = path.resolve('profiles');

async function bundledProfiles(): Promise<string[]> {
  return (await readdir(PROFILES)).filter((f) => f.endsWith('.yaml') && !f.endsWith('.secrets.yaml'));
}

function validator() {
  const ajv = new Ajv2020.default({ allErrors: true, strict: true });
  addFormats.default(ajv);
  // zod names this non-standard format; the `pattern` beside it is what any validator checks.
  ajv.addFormat('cidrv4', true);
  return ajv.compile(profileJsonSchema());
}

test('ajv accepts every bundled profile that does not extend another', async () => {
  const validate = validator();
  const files = await bundledProfiles();
  assert.ok(files.length >= 2);
  for (const file of files) {
    const data = parse(await readFile(path.join(PROFILES, file), 'utf8'));
    if (data.extends) continue;
    assert.ok(validate(data), `${file}: ${JSON.stringify(validate.errors)}`);
  }
});

test('ajv rejects a misspelt key and names it', async () => {
  const validate = validator();
  const data = parse(await readFile(path.join(PROFILES, 'opz3.yaml'), 'utf8'));
  data.keepalived.virtualRouterID = data.keepalived.virtualRouterId;
  delete data.keepalived.virtualRouterId;
  assert.not.ok(validate(data));
  const params = (validate.errors ?? []).map((e) => JSON.stringify(e.params));
  assert.ok(
    params.some((p) => p.includes('virtualRouterID')),
    params.join('\n'),
  );
});

test('ajv rejects a malformed MAC and an out-of-range router id', async () => {
  const validate = validator();
  const data = parse(await readFile(path.join(PROFILES, 'opz3.yaml'), 'utf8'));
  data.nodes[0].mac = '02:00:c0:00:02';
  data.keepalived.virtualRouterId = 256;
  data.network.vip = '192.0.2.500';
  data.network.subnet = '192.0.2.0/33';
  assert.not.ok(validate(data));
  const paths = (validate.errors ?? []).map((e) => e.instancePath);
  assert.ok(paths.includes('/nodes/0/mac'), paths.join(' '));
  assert.ok(paths.includes('/keepalived/virtualRouterId'), paths.join(' '));
  assert.ok(paths.includes('/network/vip'), paths.join(' '));
  assert.ok(paths.includes('/network/subnet'), paths.join(' '));
});

test('profiles/profile.schema.json is the generated schema (run `npm run schema` after changing src/profile/schema.ts)', async () => {
  const committed = JSON.parse(await readFile(path.join(PROFILES, 'profile.schema.json'), 'utf8'));
  assert.equal(committed, profileJsonSchema());
});

test('every bundled profile points editors at the schema on its first line', async () => {
  for (const file of await bundledProfiles()) {
    const first = (await readFile(path.join(PROFILES, file), 'utf8')).split('\n')[0];
    assert.is(first, '# yaml-language-server: $schema=./profile.schema.json', file);
  }
});

/** Every property of the schema, at any depth (under items, anyOf and $defs too), with its path. */
function properties(node: unknown, at = ''): [string, Record<string, unknown>][] {
  if (!node || typeof node !== 'object') return [];
  const found: [string, Record<string, unknown>][] = [];
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === 'properties' && value && typeof value === 'object') {
      for (const [name, property] of Object.entries(value as Record<string, Record<string, unknown>>)) {
        found.push([`${at}${name}`, property], ...properties(property, `${at}${name}.`));
      }
    } else if (key === 'items') found.push(...properties(value, `${at.replace(/\.$/, '')}[].`));
    else found.push(...properties(value, at));
  }
  return found;
}

test('every key a profile may hold has a description, so editors show what it is', () => {
  const all = properties(profileJsonSchema());
  assert.ok(all.length > 90, `the walk finds the profile's keys (found ${all.length})`);
  assert.ok(
    all.some(([p]) => p === 'nodes[].keepalived.priority'),
    'keys inside nodes[] are walked',
  );
  const bare = all
    .filter(([, property]) => typeof property.description !== 'string' || property.description.trim().length < 10)
    .map(([p]) => p);
  assert.equal(bare, [], `keys without a description in src/profile/schema.ts: ${bare.join(', ')}`);
});
