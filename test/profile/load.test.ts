/**
 * Profile validation, rule by rule: every invalid case is the bundled opz3
 * profile with one visible edit, and lists the exact problem(s) it must give —
 * file, line and column (looked up in the edited text), key path and wording.
 */
import { copyFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { suite } from '../support/test.js';
import * as assert from 'uvu/assert';
import { loadProfile } from '../../src/profile/load.js';
import { clusterWarnings } from '../../src/profile/rules.js';
import {
  REPO as REPO_DIR,
  FIXTURES,
  OPZ3,
  OPZ3_FILE,
  assertIssues,
  edit,
  loadError,
  opz3With,
  position,
  tempDir,
  writeProfiles,
  type Edit,
  type ExpectedIssue,
} from './helpers.js';

const FILE = 'bad.yaml';
const SERVERS = 'opz3-1-onder, opz3-2-midden, opz3-3-boven';
const QUORUM_FIX = 'Use an odd number of servers (3, 5, 7), or set galera.allowUnsafeClusterSize: true to accept the risk';

interface InvalidCase {
  name: string;
  /** Edits to opz3.yaml; the result is written as bad.yaml. */
  edits: Edit[];
  issues: ExpectedIssue[];
}

/** Edits that add keys to a node's flow mapping (before its closing brace). */
const onNode = (ip: string, role: string, extra: string): Edit => [
  `ip: ${ip}, roles: [${role}] }`,
  `ip: ${ip}, roles: [${role}], ${extra} }`,
];
const node1 = (extra: string) => onNode('192.0.2.60', 'server', extra);
const node2 = (extra: string) => onNode('192.0.2.61', 'server', extra);
const node4 = (extra: string) => onNode('192.0.2.63', 'agent', extra);

/** A group (multicast or broadcast) MAC for the second node: refused, whatever its separators. */
const multicastMac = (mac: string, what: string): InvalidCase => ({
  name: `a multicast MAC, ${what}`,
  edits: [['"02:00:c0:00:02:3d"', `"${mac}"`]],
  issues: [
    {
      at: { line: 'opz3-2-midden', col: `"${mac.slice(0, 5)}` },
      key: 'nodes[1].mac',
      message: `"${mac}" is a multicast address (the low bit of its first octet, ${mac.slice(0, 2)}, is set): a board's own MAC never is; copy it from the board's label or its U-Boot (printenv ethaddr)`,
    },
  ],
});

const invalid: InvalidCase[] = [
  // ---------------------------------------------------------------- board presets
  {
    name: 'a board that is no preset names the known ones',
    edits: [['board: orangepi-zero3 ', 'board: orangepi-zero4 ']],
    issues: [
      {
        at: { line: 'board: orangepi-zero4', col: 'orangepi-zero4' },
        key: 'board',
        message:
          '"orangepi-zero4" is not a board netroot knows; use one of: orangepi-zero3, rock64, qemu-virt-arm64, raspberrypi-4, raspberrypi-5, or write the board out as { name, kernel, initrd, fdt, console }',
      },
    ],
  },
  {
    name: 'board.preset must be a preset',
    edits: [['board: orangepi-zero3 ', 'board: { preset: rock46 } ']],
    issues: [
      {
        at: { line: 'board: { preset', col: 'rock46' },
        key: 'board.preset',
        message: '"rock46" is not a board netroot knows; use one of: orangepi-zero3, rock64, qemu-virt-arm64, raspberrypi-4, raspberrypi-5',
      },
    ],
  },
  // ---------------------------------------------------------------- unknown keys
  {
    name: "unknown key in a node's keepalived suggests the known one",
    edits: [node1('keepalived: { priorty: 90 }')],
    issues: [
      {
        at: { line: 'opz3-1-onder,', col: 'priorty' },
        key: 'nodes[0].keepalived.priorty',
        message: 'unknown key "priorty"; did you mean "priority"?',
      },
    ],
  },
  {
    name: "unknown key in a node's network suggests the known one",
    edits: [node4('network: { interfce: eth1 }')],
    issues: [
      {
        at: { line: 'opz3-4-top', col: 'interfce' },
        key: 'nodes[3].network.interfce',
        message: 'unknown key "interfce"; did you mean "interface"?',
      },
    ],
  },
  {
    name: 'top-level typo of an optional key',
    edits: [['k3s: {', 'storgae: { imageSize: 8G }\nk3s: {']],
    issues: [{ at: { line: 'storgae', col: 'storgae' }, key: 'storgae', message: 'unknown key "storgae"; did you mean "storage"?' }],
  },
  {
    name: 'top-level typo of a required key: the key is missing and the typo is unknown',
    edits: [['longhorn:', 'longhron:']],
    issues: [
      // a missing key points at the start of the mapping it belongs in: here the document's first key
      { at: { line: 'cluster: { name: opz3 }', col: 'cluster' }, key: 'longhorn', message: 'is missing; add it (a mapping of keys)' },
      { at: { line: 'longhron', col: 'longhron' }, key: 'longhron', message: 'unknown key "longhron"; did you mean "longhorn"?' },
    ],
  },
  {
    name: 'unknown key unlike any known one lists the known keys',
    edits: [['advertInterval: 1 }', 'advertInterval: 1, unicastPeers: [] }']],
    issues: [
      {
        at: { line: 'unicastPeers', col: 'unicastPeers' },
        key: 'keepalived.unicastPeers',
        message: 'unknown key "unicastPeers"; known keys here: virtualRouterId, advertInterval, checkInterval, checkTimeout',
      },
    ],
  },
  // ---------------------------------------------------------------- wrong types
  {
    name: 'text where a number belongs',
    edits: [['virtualRouterId: 51', 'virtualRouterId: "fifty"']],
    issues: [
      {
        at: { line: 'virtualRouterId', col: '"fifty"' },
        key: 'keepalived.virtualRouterId',
        message: 'expected a number, got text "fifty"',
      },
    ],
  },
  {
    name: 'a fraction where a whole number belongs',
    edits: [['virtualRouterId: 51', 'virtualRouterId: 51.5']],
    issues: [
      {
        at: { line: 'virtualRouterId', col: '51.5' },
        key: 'keepalived.virtualRouterId',
        message: 'expected a whole number, got number 51.5',
      },
    ],
  },
  {
    name: 'a single value where a list belongs',
    edits: [['roles: [agent]', 'roles: agent']],
    issues: [{ at: { line: 'opz3-4-top', col: 'agent' }, key: 'nodes[3].roles', message: 'expected a list, got text "agent"' }],
  },
  {
    name: 'text where true or false belongs',
    edits: [['sstMethod: rsync,', 'sstMethod: rsync, allowUnsafeClusterSize: "yes",']],
    issues: [
      {
        at: { line: 'allowUnsafeClusterSize', col: '"yes"' },
        key: 'galera.allowUnsafeClusterSize',
        message: 'expected true or false, got text "yes"',
      },
    ],
  },
  {
    name: 'a value outside an enumeration',
    edits: [['sstMethod: rsync', 'sstMethod: xtrabackup']],
    issues: [
      {
        at: { line: 'sstMethod', col: 'xtrabackup' },
        key: 'galera.sstMethod',
        message: '"xtrabackup" is not allowed; use one of: rsync, mariabackup',
      },
    ],
  },
  {
    name: 'a required key of a node is missing',
    edits: [['ip: 192.0.2.63, roles: [agent] }', 'ip: 192.0.2.63 }']],
    issues: [{ at: { line: 'opz3-4-top', col: '{' }, key: 'nodes[3].roles', message: 'is missing; add it (a list)' }],
  },
  // ---------------------------------------------------------------- malformed addresses
  {
    name: 'MAC with five pairs',
    edits: [['"02:00:c0:00:02:3d"', '"02:00:c0:00:02"']],
    issues: [
      {
        at: { line: 'opz3-2-midden', col: '"02:00' },
        key: 'nodes[1].mac',
        message: '"02:00:c0:00:02" must be a MAC address, six pairs of hex digits separated by ":" or "-"; this has 5 parts',
      },
    ],
  },
  // The hint speaks of the user's own value, never of a fixed example that would read like a correction.
  {
    name: 'MAC with a letter that is not a hex digit',
    edits: [['"02:00:c0:00:02:3d"', '"02:00:c0:00:02:3g"']],
    issues: [
      {
        at: { line: 'opz3-2-midden', col: '"02:00' },
        key: 'nodes[1].mac',
        message: '"02:00:c0:00:02:3g" must be a MAC address, six pairs of hex digits separated by ":" or "-": "g" is not a hex digit',
      },
    ],
  },
  {
    name: 'MAC without separators: the hint is the same address, written as a MAC',
    edits: [['"02:00:c0:00:02:3d"', '"0200C000023D"']],
    issues: [
      {
        at: { line: 'opz3-2-midden', col: '"0200' },
        key: 'nodes[1].mac',
        message: '"0200C000023D" must be a MAC address, six pairs of hex digits separated by ":" or "-": write it as 02:00:c0:00:02:3d',
      },
    ],
  },
  multicastMac('01:00:5e:00:02:3d', 'as for an IPv4 multicast group'),
  multicastMac('ff-ff-ff-ff-ff-ff', 'the broadcast address'),
  {
    name: 'node IP with an octet above 255',
    edits: [['ip: 192.0.2.61', 'ip: 192.0.2.300']],
    issues: [
      {
        at: { line: 'opz3-2-midden', col: '192.0.2.300' },
        key: 'nodes[1].ip',
        message: '"192.0.2.300" must be an IPv4 address such as 192.0.2.60',
      },
    ],
  },
  {
    name: 'VIP with three octets',
    edits: [['vip: 192.0.2.50', 'vip: 192.0.2']],
    issues: [{ at: { line: 'vip:', col: '192.0.2' }, key: 'network.vip', message: '"192.0.2" must be an IPv4 address such as 192.0.2.60' }],
  },
  {
    name: 'subnet without a prefix length',
    edits: [['subnet: 192.0.2.0/24', 'subnet: 192.0.2.0']],
    issues: [
      {
        at: { line: 'subnet:', col: '192.0.2.0' },
        key: 'network.subnet',
        message: '"192.0.2.0" must be an IPv4 network in CIDR form such as 192.0.2.0/24',
      },
    ],
  },
  // ---------------------------------------------------------------- duplicates
  {
    name: 'duplicate node name',
    edits: [['name: opz3-2-midden', 'name: opz3-1-onder']],
    issues: [
      {
        at: { line: '02:00:c0:00:02:3d', col: 'name:' },
        key: 'nodes[1].name',
        message: (line) => `there is already a node named opz3-1-onder (line ${line('02:00:c0:00:02:3c')}); every node needs its own name`,
      },
    ],
  },
  {
    name: 'duplicate MAC, written in upper case the second time',
    edits: [['"02:00:c0:00:02:3d"', '"02:00:C0:00:02:3C"']],
    issues: [
      {
        at: { line: 'opz3-2-midden', col: 'mac:' },
        key: 'nodes[1].mac',
        message: (line) =>
          `the MAC address 02:00:C0:00:02:3C is already used by opz3-1-onder (line ${line('opz3-1-onder,')}); every node needs its own`,
      },
    ],
  },
  {
    name: 'duplicate IP',
    edits: [['ip: 192.0.2.62', 'ip: 192.0.2.60']],
    issues: [
      {
        at: { line: 'opz3-3-boven', col: 'ip:' },
        key: 'nodes[2].ip',
        message: (line) =>
          `the IP address 192.0.2.60 is already used by opz3-1-onder (line ${line('opz3-1-onder,')}); every node needs its own`,
      },
    ],
  },
  // ---------------------------------------------------------------- subnet
  {
    name: 'node IP outside the subnet',
    edits: [['ip: 192.0.2.63', 'ip: 192.0.3.63']],
    issues: [{ at: { line: 'opz3-4-top', col: 'ip:' }, key: 'nodes[3].ip', message: '192.0.3.63 is outside the subnet 192.0.2.0/24' }],
  },
  {
    name: 'node IP is the broadcast address',
    edits: [['ip: 192.0.2.63', 'ip: 192.0.2.255']],
    issues: [
      {
        at: { line: 'opz3-4-top', col: 'ip:' },
        key: 'nodes[3].ip',
        message: '192.0.2.255 is the network or broadcast address of the subnet 192.0.2.0/24',
      },
    ],
  },
  {
    name: 'VIP outside the subnet',
    edits: [['vip: 192.0.2.50', 'vip: 198.51.100.50']],
    issues: [
      {
        at: { line: 'vip:', col: 'vip' },
        key: 'network.vip',
        message: "the VIP 198.51.100.50 is outside the subnet 192.0.2.0/24; keepalived can only hold an address on the nodes' own network",
      },
    ],
  },
  {
    name: 'gateway outside the subnet',
    edits: [['gateway: 192.0.2.1', 'gateway: 192.0.3.1']],
    issues: [
      {
        at: { line: 'gateway:', col: 'gateway' },
        key: 'network.gateway',
        message: 'the gateway 192.0.3.1 is outside the subnet 192.0.2.0/24',
      },
    ],
  },
  // ---------------------------------------------------------------- VIP and other addresses
  {
    name: 'VIP equal to a node IP',
    edits: [['vip: 192.0.2.50', 'vip: 192.0.2.61']],
    issues: [
      {
        at: { line: 'vip:', col: 'vip' },
        key: 'network.vip',
        message: (line) =>
          `the VIP 192.0.2.61 is also the address of node opz3-2-midden (line ${line('opz3-2-midden')}); the VIP must be an unused address that keepalived moves between servers`,
      },
    ],
  },
  {
    name: 'VIP equal to the NFS and TFTP server',
    edits: [['vip: 192.0.2.50', 'vip: 192.0.2.10']],
    issues: [
      {
        at: { line: 'vip:', col: 'vip' },
        key: 'network.vip',
        message: 'the VIP 192.0.2.10 is also network.nfsServer; pick an unused address',
      },
      {
        at: { line: 'vip:', col: 'vip' },
        key: 'network.vip',
        message: 'the VIP 192.0.2.10 is also network.tftpServer; pick an unused address',
      },
    ],
  },
  {
    name: 'node IP equal to the gateway',
    edits: [['ip: 192.0.2.63', 'ip: 192.0.2.1']],
    issues: [
      {
        at: { line: 'opz3-4-top', col: 'ip:' },
        key: 'nodes[3].ip',
        message: '192.0.2.1 is also network.gateway; a node needs an address of its own',
      },
    ],
  },
  // ---------------------------------------------------------------- roles and quorum
  {
    name: 'a node that is both server and agent',
    edits: [['ip: 192.0.2.62, roles: [server]', 'ip: 192.0.2.62, roles: [server, agent]']],
    issues: [
      {
        at: { line: 'opz3-3-boven', col: 'roles:' },
        key: 'nodes[2].roles',
        message: 'a node is either a server or an agent: a k3s server already runs workloads, so write roles: [server]',
      },
    ],
  },
  {
    name: 'two servers: fewer than 3',
    edits: [['ip: 192.0.2.62, roles: [server]', 'ip: 192.0.2.62, roles: [agent]']],
    issues: [
      {
        at: { line: 'nodes:', col: 'nodes' },
        key: 'nodes',
        message: `there are 2 servers; Galera needs at least 3 so that the other two keep a majority when one fails. ${QUORUM_FIX}`,
      },
    ],
  },
  {
    name: 'one server',
    edits: [
      ['ip: 192.0.2.61, roles: [server]', 'ip: 192.0.2.61, roles: [agent]'],
      ['ip: 192.0.2.62, roles: [server]', 'ip: 192.0.2.62, roles: [agent]'],
    ],
    issues: [
      {
        at: { line: 'nodes:', col: 'nodes' },
        key: 'nodes',
        message: `there is 1 server; Galera needs at least 3 so that the other two keep a majority when one fails. ${QUORUM_FIX}`,
      },
    ],
  },
  {
    name: 'four servers: an even number',
    edits: [['roles: [agent]', 'roles: [server]']],
    issues: [
      {
        at: { line: 'nodes:', col: 'nodes' },
        key: 'nodes',
        message: `there are 4 servers; with an even number a network split can leave two halves of 2 with no majority (split-brain), and the database stops on both. ${QUORUM_FIX}`,
      },
    ],
  },
  // ---------------------------------------------------------------- keepalived
  {
    name: 'virtualRouterId 0',
    edits: [['virtualRouterId: 51', 'virtualRouterId: 0']],
    issues: [{ at: { line: 'virtualRouterId', col: '0,' }, key: 'keepalived.virtualRouterId', message: '0 must be between 1 and 255' }],
  },
  {
    name: 'virtualRouterId 256',
    edits: [['virtualRouterId: 51', 'virtualRouterId: 256']],
    issues: [{ at: { line: 'virtualRouterId', col: '256' }, key: 'keepalived.virtualRouterId', message: '256 must be between 1 and 255' }],
  },
  {
    name: 'node priority 0',
    edits: [node1('keepalived: { priority: 0 }')],
    issues: [
      {
        at: { line: 'opz3-1-onder,', col: '0 }' },
        key: 'nodes[0].keepalived.priority',
        message: '0 must be between 1 and 254 (255 is reserved for the address owner)',
      },
    ],
  },
  {
    name: 'node priority 255',
    edits: [node1('keepalived: { priority: 255 }')],
    issues: [
      {
        at: { line: 'opz3-1-onder,', col: '255' },
        key: 'nodes[0].keepalived.priority',
        message: '255 must be between 1 and 254 (255 is reserved for the address owner)',
      },
    ],
  },
  {
    name: 'two equal explicit priorities',
    edits: [node1('keepalived: { priority: 90 }'), node2('keepalived: { priority: 90 }')],
    issues: [
      {
        at: { line: 'opz3-2-midden', col: 'priority' },
        key: 'nodes[1].keepalived.priority',
        message: (line) =>
          `priority 90 is also the priority of opz3-1-onder (line ${line('02:00:c0:00:02:3c')}); VRRP priorities must be unique so that one server is clearly preferred`,
      },
    ],
  },
  {
    name: 'keepalived settings on an agent',
    edits: [node4('keepalived: { priority: 10 }')],
    issues: [
      {
        at: { line: 'opz3-4-top', col: 'keepalived' },
        key: 'nodes[3].keepalived',
        message: 'keepalived runs on servers only; remove this key from the agent',
      },
    ],
  },
  // ---------------------------------------------------------------- galera bootstrap
  {
    name: 'bootstrapNode is an agent',
    edits: [['bootstrapNode: opz3-1-onder', 'bootstrapNode: opz3-4-top']],
    issues: [
      {
        at: { line: 'bootstrapNode', col: 'bootstrapNode' },
        key: 'galera.bootstrapNode',
        message: (line) =>
          `opz3-4-top (line ${line('opz3-4-top,')}) is an agent; the Galera cluster can only be bootstrapped on a server: ${SERVERS}`,
      },
    ],
  },
  {
    name: 'bootstrapNode does not exist',
    edits: [['bootstrapNode: opz3-1-onder', 'bootstrapNode: opz3-9-nope']],
    issues: [
      {
        at: { line: 'bootstrapNode', col: 'bootstrapNode' },
        key: 'galera.bootstrapNode',
        message: `there is no node named opz3-9-nope; name one of the servers: ${SERVERS}`,
      },
    ],
  },
  // ---------------------------------------------------------------- Ganesha
  {
    name: 'Ganesha Export_Ids past 65535',
    edits: [['tftpRoot: /srv/tftp }', 'tftpRoot: /srv/tftp, firstExportId: 65533 }']],
    issues: [
      {
        at: { line: 'firstExportId', col: 'firstExportId' },
        key: 'exports.firstExportId',
        message: 'the 4 nodes would take Ganesha Export_Ids up to 65536, past 65535; start lower',
      },
    ],
  },
  // ---------------------------------------------------------------- local storage
  {
    name: 'Longhorn on with local storage off for the cluster',
    edits: [['k3s: {', 'storage: { enabled: false }\nk3s: {']],
    issues: [
      {
        at: { line: 'storage: { enabled', col: 'enabled' },
        key: 'storage.enabled',
        message: `local storage is off on ${SERVERS}, opz3-4-top, but Longhorn keeps its data in /var/lib/longhorn on local ext4 and cannot use the NFS root; set longhorn.enabled: false or turn local storage back on`,
      },
    ],
  },
  {
    name: 'Longhorn on with local storage off on one node',
    edits: [node2('storage: { enabled: false }')],
    issues: [
      {
        at: { line: 'opz3-2-midden', col: 'enabled' },
        key: 'nodes[1].storage.enabled',
        message:
          'local storage is off on opz3-2-midden, but Longhorn keeps its data in /var/lib/longhorn on local ext4 and cannot use the NFS root; set longhorn.enabled: false or turn local storage back on',
      },
    ],
  },
  // ---------------------------------------------------------------- Longhorn UI
  {
    name: 'the Longhorn UI on with Traefik disabled',
    edits: [['user: k3s }', 'user: k3s, disable: [traefik] }']],
    issues: [
      {
        at: { line: 'ui: { enabled', col: 'enabled: true }' },
        key: 'longhorn.ui.enabled',
        message:
          "the Longhorn UI is served through k3s's bundled Traefik, which k3s.disable turns off: remove traefik from k3s.disable, or turn the UI off",
      },
    ],
  },
  {
    name: 'the old longhorn.uiPort, which opened the UI to anyone',
    edits: [['ui: { enabled: true }', 'uiPort: 8877']],
    issues: [
      {
        at: { line: 'uiPort', col: '8877' },
        key: 'longhorn.uiPort',
        message:
          "8877 is no longer supported: it opened the UI to anyone on every node's IP; set longhorn.ui.enabled: true to serve it at https://VIP/ behind a generated password",
      },
    ],
  },
  // ---------------------------------------------------------------- YAML itself
  {
    name: 'invalid YAML: a tab as indentation',
    edits: [['  gateway: 192.0.2.1', '\tgateway: 192.0.2.1']],
    issues: [
      { at: { line: '\tgateway', col: '\tgateway' }, key: '', message: 'this is not valid YAML: Tabs are not allowed as indentation' },
    ],
  },
  {
    name: 'invalid YAML: one stray brace is one problem, not a cascade',
    edits: [['roles: [agent] }', 'roles: [agent] }}']],
    issues: [
      {
        at: { line: 'opz3-4-top', col: '}}', offset: 1 },
        key: '',
        message: 'this is not valid YAML: Unexpected flow-map-end token in YAML stream: "}"',
      },
    ],
  },
  {
    name: 'invalid YAML: a colon inside an unquoted value',
    edits: [['vip: 192.0.2.50', 'vip: 192.0.2.50: 51']],
    issues: [
      {
        at: { line: 'vip:', col: '192.0.2.50' },
        key: '',
        message: 'this is not valid YAML: Nested mappings are not allowed in compact mappings',
      },
    ],
  },
  {
    name: 'invalid YAML: a duplicate key in a block mapping',
    edits: [['  vip: 192.0.2.50\n', '  vip: 192.0.2.50\n  vip: 192.0.2.51\n']],
    issues: [{ at: { line: 'vip: 192.0.2.51', col: 'vip' }, key: 'vip', message: 'this key appears twice in the same mapping; keep one' }],
  },
  {
    name: "invalid YAML: a duplicate key in a node's flow mapping",
    edits: [['ip: 192.0.2.61,', 'ip: 192.0.2.61, ip: 192.0.2.71,']],
    issues: [
      { at: { line: 'opz3-2-midden', col: 'ip: 192.0.2.71' }, key: 'ip', message: 'this key appears twice in the same mapping; keep one' },
    ],
  },
];

// Raspberry Pi boards: each node's serial names its TFTP directory.
const PI4 = ['board: orangepi-zero3 ', 'board: raspberrypi-4 '] as Edit;
const SERIAL_HELP =
  "must be the board's serial number as its bootloader names its TFTP directory: 8 lower-case hex digits, the end of Serial in /proc/cpuinfo, such as 9ffefdef";
const piSerials = (n4: string): Edit[] => [
  PI4,
  node1('serial: 5a0c7101'),
  node2('serial: 5a0c7102'),
  onNode('192.0.2.62', 'server', 'serial: 5a0c7103'),
  ...(n4 ? [node4(n4)] : []),
];
invalid.push(
  {
    name: 'a Raspberry Pi node without a serial',
    edits: piSerials(''),
    issues: [
      {
        at: { line: 'opz3-4-top', col: '{ name: opz3-4-top' },
        key: 'nodes[3]',
        message:
          'opz3-4-top is a raspberrypi-4 (board loader raspberrypi), whose bootloader fetches its files from a TFTP directory named after its serial number: give it serial: with the last 8 hex digits of Serial in its /proc/cpuinfo, such as 9ffefdef',
      },
    ],
  },
  {
    name: 'a Raspberry Pi serial written as /proc/cpuinfo prints it (16 digits)',
    edits: piSerials('serial: "100000005A0C7104"'),
    issues: [
      {
        at: { line: 'opz3-4-top', col: '"100000005A0C7104"' },
        key: 'nodes[3].serial',
        message: `"100000005A0C7104" ${SERIAL_HELP}: write 5a0c7104`,
      },
    ],
  },
  {
    name: 'a Raspberry Pi serial with a letter that is no hex digit',
    edits: piSerials('serial: 5a0c71g4'),
    issues: [
      { at: { line: 'opz3-4-top', col: '5a0c71g4' }, key: 'nodes[3].serial', message: `"5a0c71g4" ${SERIAL_HELP}: "g" is not a hex digit` },
    ],
  },
  {
    name: 'two Raspberry Pis with one serial',
    edits: piSerials('serial: 5a0c7102'),
    issues: [
      {
        at: { line: 'opz3-4-top', col: 'serial:' },
        key: 'nodes[3].serial',
        message: (line) => `the serial 5a0c7102 is already opz3-2-midden's (line ${line('opz3-2-midden,')}); every board has its own`,
      },
    ],
  },
  {
    name: 'a serial on a board that boots through U-Boot',
    edits: [node4('serial: 5a0c7104')],
    issues: [
      {
        at: { line: 'opz3-4-top', col: 'serial:' },
        key: 'nodes[3].serial',
        message:
          "serial is read for Raspberry Pi boards only (board loader raspberrypi); opz3-4-top's board orangepi-zero3 boots through U-Boot by its MAC: remove serial",
      },
    ],
  },
);

const Invalid = suite('load: every rule refuses a bad profile');

for (const c of invalid) {
  Invalid(c.name, async () => {
    const text = opz3With(...c.edits);
    const dir = await writeProfiles({ [FILE]: text });
    const error = await loadError(dir, FILE);
    assertIssues(error, { [FILE]: text }, FILE, c.issues);
  });
}

Invalid('a profile that is not a mapping', async () => {
  const text = '- cluster\n- nodes\n';
  const dir = await writeProfiles({ [FILE]: text });
  assertIssues(await loadError(dir, FILE), { [FILE]: text }, FILE, [
    { at: { line: '- cluster', col: '-' }, key: '', message: 'a profile must be a YAML mapping of keys (cluster:, network:, nodes:, …)' },
  ]);
});

// ------------------------------------------------------------------ extends: errors

interface ExtendsCase {
  name: string;
  files: Record<string, string>;
  load: string;
  issues: ExpectedIssue[];
}

const LAB = await readFile(path.join(FIXTURES, 'opz3-lab.yaml'), 'utf8');

const extendsInvalid: ExtendsCase[] = [
  {
    name: 'a cycle: a extends b, b extends a',
    files: { 'a.yaml': 'extends: b\ncluster: { name: a }\n', 'b.yaml': 'extends: a\ncluster: { name: b }\n' },
    load: 'a.yaml',
    issues: [
      {
        at: { line: 'extends: b', col: 'extends' },
        key: 'extends',
        message: 'profiles extend each other in a cycle (a.yaml → b.yaml → a.yaml); remove one of the extends',
      },
    ],
  },
  {
    name: 'a profile that extends itself',
    files: { 'a.yaml': 'extends: a\ncluster: { name: a }\n' },
    load: 'a.yaml',
    issues: [
      {
        at: { line: 'extends: a', col: 'extends' },
        key: 'extends',
        message: 'profiles extend each other in a cycle (a.yaml → a.yaml); remove one of the extends',
      },
    ],
  },
  {
    name: 'extends names a profile that does not exist',
    files: { 'lab.yaml': edit(LAB, ['extends: opz3', 'extends: nothere']) },
    load: 'lab.yaml',
    issues: [
      {
        at: { line: 'extends:', col: 'nothere' },
        key: 'extends',
        message: 'nothere.yaml does not exist; name a profile in the same directory or give a path',
      },
    ],
  },
  {
    name: 'extends gives a path that does not exist',
    files: { 'lab.yaml': edit(LAB, ['extends: opz3', 'extends: shared/opz3.yaml']) },
    load: 'lab.yaml',
    issues: [
      {
        at: { line: 'extends:', col: 'shared' },
        key: 'extends',
        message: 'shared/opz3.yaml does not exist; name a profile in the same directory or give a path',
      },
    ],
  },
  {
    name: 'extends is not a name',
    files: { 'lab.yaml': edit(LAB, ['extends: opz3', 'extends: [opz3]']) },
    load: 'lab.yaml',
    issues: [{ at: { line: 'extends:', col: '[' }, key: 'extends', message: 'must be the name of another profile or a path to one' }],
  },
  {
    name: 'an error in the child points at the child',
    files: { 'opz3.yaml': OPZ3, 'opz3-lab.yaml': edit(LAB, ['virtualRouterId: 60', 'virtualRouterId: 0']) },
    load: 'opz3-lab.yaml',
    issues: [{ at: { line: 'virtualRouterId', col: '0 }' }, key: 'keepalived.virtualRouterId', message: '0 must be between 1 and 255' }],
  },
  {
    name: 'an error in a value inherited from the parent points at the parent',
    files: { 'opz3.yaml': edit(OPZ3, ['"02:00:c0:00:02:3f"', '"02:00:c0:00:02:3"']), 'opz3-lab.yaml': LAB },
    load: 'opz3-lab.yaml',
    issues: [
      {
        at: { file: 'opz3.yaml', line: 'opz3-4-top', col: '"02:00' },
        key: 'nodes[3].mac',
        message: '"02:00:c0:00:02:3" must be a MAC address, six pairs of hex digits separated by ":" or "-": "3" is not a pair',
      },
    ],
  },
  {
    name: 'a rule about a child value and a parent value names the parent file and line',
    files: {
      'opz3.yaml': OPZ3,
      'opz3-lab.yaml': edit(LAB, ['cluster: { name: opz3-lab }', 'cluster: { name: opz3-lab }\nnetwork: { vip: 192.0.2.60 }']),
    },
    load: 'opz3-lab.yaml',
    issues: [
      {
        at: { line: 'vip:', col: 'vip' },
        key: 'network.vip',
        message: (line) =>
          `the VIP 192.0.2.60 is also the address of node opz3-1-onder (opz3.yaml:${line('opz3-1-onder,', 'opz3.yaml')}); the VIP must be an unused address that keepalived moves between servers`,
      },
    ],
  },
  {
    name: "a node the child appends that reuses a parent node's MAC",
    files: { 'opz3.yaml': OPZ3, 'opz3-lab.yaml': edit(LAB, ['"02:00:c0:00:02:40"', '"02:00:c0:00:02:3f"']) },
    load: 'opz3-lab.yaml',
    issues: [
      {
        // the key path counts nodes in the merged list: opz3-5-extra is the 5th node
        at: { line: 'opz3-5-extra', col: 'mac:' },
        key: 'nodes[4].mac',
        message: (line) =>
          `the MAC address 02:00:c0:00:02:3f is already used by opz3-4-top (opz3.yaml:${line('opz3-4-top', 'opz3.yaml')}); every node needs its own`,
      },
    ],
  },
];

const Extends = suite('load: extends');

for (const c of extendsInvalid) {
  Extends(c.name, async () => {
    const dir = await writeProfiles(c.files);
    const error = await loadError(dir, c.load);
    assertIssues(error, c.files, c.load, c.issues);
  });
}

Extends('the child overrides scalars, merges nodes by name and appends new ones', async () => {
  const dir = await tempDir();
  await copyFile(OPZ3_FILE, path.join(dir, 'opz3.yaml'));
  await copyFile(path.join(FIXTURES, 'opz3-lab.yaml'), path.join(dir, 'opz3-lab.yaml'));
  const loaded = await loadProfile('opz3-lab.yaml', { cwd: dir });
  assert.is(loaded.name, 'opz3-lab');
  assert.is(loaded.cluster.name, 'opz3-lab', 'child overrides cluster.name');
  assert.equal(
    loaded.profile.keepalived,
    { virtualRouterId: 60, advertInterval: 1, checkInterval: 2, checkTimeout: 4 },
    'child overrides one key, the others are inherited or default',
  );
  assert.is(loaded.profile.network.vip, '192.0.2.50', 'untouched sections come from the parent');
  assert.is((loaded.profile as Record<string, unknown>).extends, undefined, 'extends is not part of the result');
  assert.equal(
    loaded.cluster.nodes.map((n) => [n.name, n.mac, n.ip, n.roles.join()]),
    [
      ['opz3-1-onder', '02:00:c0:00:02:3c', '192.0.2.60', 'server'],
      ['opz3-2-midden', '02:00:c0:00:02:3d', '192.0.2.71', 'server'],
      ['opz3-3-boven', '02:00:c0:00:02:3e', '192.0.2.62', 'server'],
      ['opz3-4-top', '02:00:c0:00:02:3f', '192.0.2.63', 'agent'],
      ['opz3-5-extra', '02:00:c0:00:02:40', '192.0.2.64', 'agent'],
    ],
  );
  const lab = await readFile(path.join(dir, 'opz3-lab.yaml'), 'utf8');
  assert.equal(loaded.locate(['keepalived', 'virtualRouterId']), {
    file: 'opz3-lab.yaml',
    ...position(lab, { line: 'virtualRouterId', col: 'virtualRouterId' }),
  });
  assert.equal(loaded.locate(['network', 'vip']), { file: 'opz3.yaml', ...position(OPZ3, { line: 'vip:', col: 'vip' }) });
  assert.equal(loaded.locate(['nodes', 1, 'ip']), { file: 'opz3-lab.yaml', ...position(lab, { line: 'opz3-2-midden', col: 'ip:' }) });
  assert.equal(loaded.locate(['nodes', 1, 'mac']), { file: 'opz3.yaml', ...position(OPZ3, { line: 'opz3-2-midden', col: 'mac:' }) });
});

// ------------------------------------------------------------------ valid profiles

const Valid = suite('load: valid profiles');

Valid('the bundled opz3 profile loads by name', async () => {
  const loaded = await loadProfile('opz3', { cwd: await tempDir() });
  assert.is(loaded.name, 'opz3');
  assert.is(loaded.file, OPZ3_FILE);
  assert.is(loaded.cluster.name, 'opz3');
  assert.equal(
    loaded.cluster.servers.map((n) => n.name),
    ['opz3-1-onder', 'opz3-2-midden', 'opz3-3-boven'],
  );
  assert.equal(
    loaded.cluster.agents.map((n) => n.name),
    ['opz3-4-top'],
  );
  assert.is(loaded.cluster.bootstrapNode, 'opz3-1-onder');
  assert.equal(
    loaded.cluster.nodes.map((n) => n.interface),
    ['end0', 'end0', 'end0', 'end0'],
  );
  assert.equal(loaded.profile.storage, { enabled: true, imageSize: '16G', label: 'netroot-local' }, 'defaults are filled in');
});

Valid('seed priorities: 100 MASTER, then 50 and 49 BACKUP; agents have none', async () => {
  const loaded = await loadProfile(OPZ3_FILE);
  assert.equal(
    loaded.cluster.servers.map((n) => [n.name, n.keepalived?.priority, n.keepalived?.state]),
    [
      ['opz3-1-onder', 100, 'MASTER'],
      ['opz3-2-midden', 50, 'BACKUP'],
      ['opz3-3-boven', 49, 'BACKUP'],
    ],
  );
  assert.is(loaded.cluster.agents[0]!.keepalived, undefined);
});

async function loadText(text: string) {
  const dir = await writeProfiles({ 'ok.yaml': text });
  return loadProfile('ok.yaml', { cwd: dir });
}

Valid('the login warning says how: its example, pasted into opz3 with a real key, loads and silences it', async () => {
  const [warning] = clusterWarnings((await loadProfile(OPZ3_FILE)).cluster);
  assert.ok(warning, 'the shipped opz3 has no key, so it warns');
  assert.not.match(warning, /\n/, 'one line');
  const example = /e\.g\. (ssh: .*)$/.exec(warning)?.[1];
  assert.ok(example, `the warning names the key to set: ${warning}`);
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINebRy7VBys0QP6ubC9/5YatajgkJoeKAgIQmZNChbnS you@laptop';
  const pasted = example.replace(/ssh-ed25519 AAAA… you@laptop/, key);
  assert.is.not(pasted, example, 'the example holds a placeholder key to replace');
  const loaded = await loadText(`${OPZ3}${pasted}\n`);
  assert.equal(
    loaded.cluster.nodes.map((n) => n.authorizedKeys),
    [[key], [key], [key], [key]],
  );
  assert.equal(clusterWarnings(loaded.cluster), []);
});

Valid('a MAC written with "-" (as Windows prints it) is kept with ":", in lower case', async () => {
  const loaded = await loadText(opz3With(['"02:00:c0:00:02:3d"', 'AA-BB-CC-DD-EE-0F']));
  assert.is(loaded.cluster.nodes[1]!.mac, 'aa:bb:cc:dd:ee:0f');
});

Valid('an explicit priority is kept and the defaults skip it', async () => {
  const third = await loadText(
    opz3With(['ip: 192.0.2.62, roles: [server] }', 'ip: 192.0.2.62, roles: [server], keepalived: { priority: 50 } }']),
  );
  assert.equal(
    third.cluster.servers.map((n) => [n.name, n.keepalived?.priority, n.keepalived?.state, n.keepalived?.explicit]),
    [
      ['opz3-1-onder', 100, 'MASTER', false],
      ['opz3-2-midden', 49, 'BACKUP', false],
      ['opz3-3-boven', 50, 'BACKUP', true],
    ],
  );
  const second = await loadText(opz3With(node2('keepalived: { priority: 100 }')));
  assert.equal(
    second.cluster.servers.map((n) => [n.name, n.keepalived?.priority, n.keepalived?.state]),
    [
      ['opz3-1-onder', 50, 'BACKUP'],
      ['opz3-2-midden', 100, 'MASTER'],
      ['opz3-3-boven', 49, 'BACKUP'],
    ],
    'taking 100 explicitly moves MASTER to that node',
  );
});

Valid('per-node interface: shorthand and network.interface apply to that node only', async () => {
  const loaded = await loadText(
    opz3With(node2('interface: eth1'), [
      'ip: 192.0.2.62, roles: [server] }',
      'ip: 192.0.2.62, roles: [server], network: { interface: eth2, gateway: 192.0.2.254 } }',
    ]),
  );
  assert.equal(
    loaded.cluster.nodes.map((n) => [n.name, n.interface, n.gateway]),
    [
      ['opz3-1-onder', 'end0', '192.0.2.1'],
      ['opz3-2-midden', 'eth1', '192.0.2.1'],
      ['opz3-3-boven', 'eth2', '192.0.2.254'],
      ['opz3-4-top', 'end0', '192.0.2.1'],
    ],
  );
});

Valid('an unsafe cluster size is accepted with galera.allowUnsafeClusterSize: true', async () => {
  const allow: Edit = ['sstMethod: rsync,', 'sstMethod: rsync, allowUnsafeClusterSize: true,'];
  const two = await loadText(opz3With(['ip: 192.0.2.62, roles: [server]', 'ip: 192.0.2.62, roles: [agent]'], allow));
  assert.is(two.cluster.servers.length, 2);
  const four = await loadText(opz3With(['roles: [agent]', 'roles: [server]'], allow));
  assert.is(four.cluster.servers.length, 4);
});

Valid('a MAC in upper case is accepted and lower-cased', async () => {
  const loaded = await loadText(opz3With(['"02:00:c0:00:02:3d"', '"02:00:C0:00:02:3D"']));
  assert.is(loaded.cluster.nodes[1]!.mac, '02:00:c0:00:02:3d');
});

Valid('a board preset stands for its kernel, initrd, device tree, console and modules; its keys can be overridden', async () => {
  const opz3 = await loadText(OPZ3);
  assert.equal(
    [
      opz3.profile.board.name,
      opz3.profile.board.kernel,
      opz3.profile.board.initrd,
      opz3.profile.board.fdt,
      opz3.profile.board.console,
      opz3.profile.board.modules,
    ],
    ['orangepi-zero3', '/boot/Image', '/boot/uInitrd', '/boot/dtb/allwinner/sun50i-h618-orangepi-zero3.dtb', 'ttyS0,115200', []],
  );
  const virt = await loadText(opz3With(['board: orangepi-zero3 ', 'board: qemu-virt-arm64 ']));
  const board = virt.cluster.nodes[0]!.board;
  assert.equal(
    [board.name, board.kernel, board.initrd, board.fdt, board.console],
    ['qemu-virt-arm64', '/vmlinuz', '/initrd.img', undefined, 'ttyAMA0'],
  );
  assert.equal(board.modules, ['virtio_net', 'virtio_mmio', 'net_failover', 'failover']);
  const rock = await loadText(opz3With(['board: orangepi-zero3 ', 'board: { preset: rock64, console: "ttyS2,115200", panic: 30 } ']));
  assert.equal(
    [rock.profile.board.fdt, rock.profile.board.console, rock.profile.board.panic],
    ['/boot/dtb/rockchip/rk3328-rock64.dtb', 'ttyS2,115200', 30],
  );
});

Valid(
  "a board written out with a preset's name takes the preset's values for the keys it leaves out; another name takes the defaults",
  async () => {
    const own = await loadText(
      opz3With(['board: orangepi-zero3 ', 'board: { name: rock64, kernel: /boot/Image-6.6, initrd: /boot/uInitrd-6.6 } ']),
    );
    const b = own.cluster.nodes[0]!.board;
    assert.equal(
      [b.name, b.kernel, b.initrd, b.fdt, b.console],
      ['rock64', '/boot/Image-6.6', '/boot/uInitrd-6.6', '/boot/dtb/rockchip/rk3328-rock64.dtb', 'ttyS2,1500000'],
    );
    const ownConsole = await loadText(
      opz3With(['board: orangepi-zero3 ', 'board: { name: rock64, kernel: /boot/Image, initrd: /boot/uInitrd, console: "ttyS2,115200" } ']),
    );
    assert.is(ownConsole.profile.board.console, 'ttyS2,115200', 'its own keys win');
    const other = await loadText(
      opz3With(['board: orangepi-zero3 ', 'board: { name: my-rock, kernel: /boot/Image, initrd: /boot/uInitrd } ']),
    );
    assert.equal([other.profile.board.console, other.profile.board.fdt], ['ttyS0,115200', undefined]);
    // The JSON Schema says so where a board's name is described.
    const schema = JSON.parse(await readFile(path.join(REPO_DIR, 'profiles/profile.schema.json'), 'utf8'));
    const name = schema.properties.board.anyOf[1].properties.name.description as string;
    assert.match(
      name,
      "A preset's name (orangepi-zero3, rock64, qemu-virt-arm64, raspberrypi-4, raspberrypi-5) makes the board that preset with these keys over it",
    );
  },
);

Valid('opz3-netboot: opz3 on the emulated arm64 board, from a Debian arm64 base with its kernel', async () => {
  const loaded = await loadProfile('opz3-netboot', { cwd: REPO_DIR });
  assert.is(loaded.cluster.name, 'opz3-netboot');
  assert.is(loaded.profile.board.name, 'qemu-virt-arm64');
  assert.match(loaded.profile.base!, /^debootstrap:bookworm:arm64:.*linux-image-arm64/);
  assert.equal(
    loaded.cluster.nodes.map((n) => [n.name, n.ip, n.interface]),
    (await loadProfile('opz3', { cwd: REPO_DIR })).cluster.nodes.map((n) => [n.name, n.ip, 'eth0']),
  );
});
