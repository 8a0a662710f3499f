/**
 * The profile schema: the single source for the loader, `build-images schema`
 * (JSON Schema for editors) and the key descriptions editors show (docs/profiles.md has the rules beyond it).
 */
import { z } from 'zod';
import { BOARD_LOADERS, BOARD_PRESETS, BOARD_PRESET_NAMES } from './boards.js';

const hostname = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    'must be a host name: lower-case letters, digits and "-", not starting or ending with "-", at most 63 characters',
  );
const ipv4 = z.ipv4({ message: 'must be an IPv4 address such as 192.0.2.60' });
/**
 * What is wrong with a MAC address as the user wrote it, or their own value as it should be written: a fixed
 * example would read like a correction of their address.
 */
export function macHint(input: unknown): string {
  const text = String(input);
  const what = 'must be a MAC address, six pairs of hex digits separated by ":" or "-"';
  const stray = /[^0-9A-Fa-f:.\s-]/.exec(text);
  if (stray) return `${what}: "${stray[0]}" is not a hex digit`;
  // The same address without separators (0200c000023c) or in Cisco's dotted form (0200.c000.023c).
  const digits = text.replace(/[.\s]/g, '');
  if (/^[0-9A-Fa-f]{12}$/.test(digits)) return `${what}: write it as ${digits.toLowerCase().match(/../g)!.join(':')}`;
  const groups = text.split(/[:-]/);
  if (groups.length < 2) return what;
  const odd = groups.find((g) => !/^[0-9A-Fa-f]{2}$/.test(g));
  if (groups.length === 6 && odd !== undefined) return `${what}: "${odd}" is not a pair`;
  return `${what}; this has ${groups.length} parts`;
}

/** What is wrong with a Raspberry Pi serial as written, with the value to write where it can tell. */
export function serialHint(input: unknown): string {
  const what =
    "must be the board's serial number as its bootloader names its TFTP directory: 8 lower-case hex digits, the end of Serial in /proc/cpuinfo, such as 9ffefdef";
  const text = typeof input === 'string' ? input.trim().replace(/^0x/i, '') : String(input);
  if (typeof input !== 'string') return what;
  if (/^[0-9a-fA-F]{8,16}$/.test(text)) return `${what}: write ${text.slice(-8).toLowerCase()}`;
  const stray = /[^0-9a-fA-F]/.exec(text);
  if (stray) return `${what}: "${stray[0]}" is not a hex digit`;
  return `${what}; this has ${text.length} digits`;
}

/** Written with ":" or "-" (as Windows and some switches print it), in either case; always kept with ":". */
const mac = z
  .string()
  .regex(/^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$/, { error: (issue) => macHint(issue.input) })
  // The first octet's low bit marks a group (multicast or broadcast) address: no board's NIC has one, and DHCP and PXE would never match it.
  .refine((value) => (parseInt(value.slice(0, 2), 16) & 1) === 0, {
    error: (issue) =>
      `is a multicast address (the low bit of its first octet, ${String(issue.input).slice(0, 2)}, is set): a board's own MAC never is; copy it from the board's label or its U-Boot (printenv ethaddr)`,
  })
  .transform((value) => value.replace(/-/g, ':'));
const absPath = z.string().regex(/^\/(?!.*(^|\/)\.\.(\/|$)).*$/, 'must be an absolute path without ".."');
const ifname = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'must be a network interface name such as end0 or eth0 (at most 15 characters)');
const ntpServer = z
  .string()
  .regex(
    /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/,
    'must be an NTP server: an IPv4 address or a host name such as ntp.example.org',
  );
/** One OpenSSH public key line (no options prefix: netroot writes the whole line into authorized_keys). */
const sshPublicKey = z
  .string()
  .regex(
    /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [^\n\r]*)?$/,
    'must be one OpenSSH public key such as "ssh-ed25519 AAAAC3Nza… you@laptop" (the line of a .pub file)',
  );
const size = z.string().regex(/^[1-9][0-9]*[MGT]$/, 'must be a size such as 512M, 16G or 1T');

export const ROLES = ['server', 'agent'] as const;
export type Role = (typeof ROLES)[number];

export const LONGHORN_NODE_DOWN_POLICIES = [
  'do-nothing',
  'delete-statefulset-pod',
  'delete-deployment-pod',
  'delete-both-statefulset-and-deployment-pod',
] as const;

const network = z.strictObject({
  interface: ifname.describe('Boot interface of the nodes as the kernel names it (Armbian on the Orange Pi Zero 3: end0).'),
  subnet: z
    .cidrv4({ message: 'must be an IPv4 network in CIDR form such as 192.0.2.0/24' })
    .describe('The IPv4 network of the nodes in CIDR form (192.0.2.0/24); every node IP and the VIP must lie inside it.'),
  gateway: ipv4.describe("The nodes' default gateway, handed out by DHCP (a node may set its own under nodes[].network)."),
  dns: z
    .array(ipv4)
    .min(1, 'needs at least one DNS server')
    .describe('DNS servers of the nodes, through systemd-resolved where the base has it, else /etc/resolv.conf.'),
  ntp: z
    .array(ntpServer)
    .min(1, 'needs at least one NTP server (leave ntp out to use the gateway)')
    .optional()
    .describe(
      'NTP servers the nodes set their clocks from (default: the gateway). k3s and Galera start only once the clock is set, or after a bounded wait.',
    ),
  vip: ipv4.describe('The HA IP that keepalived moves between the servers; k3s and the datastore are reached through it.'),
  nfsServer: ipv4.describe("Address of the NFS server that exports the nodes' roots (nfsroot= on the kernel command line)."),
  tftpServer: ipv4.describe('Address of the TFTP server U-Boot fetches pxelinux.cfg, kernel and initrd from (DHCP next-server).'),
});

const board = z.strictObject({
  preset: z
    .enum(BOARD_PRESET_NAMES)
    .optional()
    .describe(
      `The board whose settings the other keys override: ${BOARD_PRESET_NAMES.map((n) => `${n} (${BOARD_PRESETS[n].about})`).join('; ')}. \`board: NAME\` alone takes the preset as it is.`,
    ),
  name: hostname.describe(
    `Board name, used for the TFTP directory that holds its kernel, initrd and device tree. A preset's name (${BOARD_PRESET_NAMES.join(', ')}) makes the board that preset with these keys over it, as preset: NAME does: keys left out take the preset's values, not the defaults below.`,
  ),
  loader: z
    .enum(BOARD_LOADERS)
    .default('u-boot')
    .describe(
      'What boots the board over the network: u-boot (a pxelinux file per MAC, pxelinux.cfg/01-<mac>) or raspberrypi (a Raspberry Pi 4/5 EEPROM bootloader: the "Raspberry Pi Boot" PXE service, then config.txt, cmdline.txt and the files below from the TFTP directory named after each node\'s serial).',
    ),
  kernel: absPath.describe('Kernel image inside the root filesystem (Armbian: /boot/Image).'),
  initrd: absPath.describe('Initrd inside the root filesystem (Armbian: /boot/uInitrd).'),
  fdt: absPath.optional().describe('Device tree inside the root filesystem. Leave it out where U-Boot passes its own (QEMU virt).'),
  console: z
    .string()
    .regex(/^[A-Za-z0-9]+(,[0-9]+[a-z0-9]*)?$/, 'must be a console such as ttyS0,115200')
    .default('ttyS0,115200')
    .describe("Serial console as console= takes it: device and baud rate (default ttyS0,115200; the preset's where a preset is named)."),
  modules: z
    .array(z.string().regex(/^[a-z0-9_-]+$/, 'must be a kernel module name such as virtio_net'))
    .default([])
    .describe(
      "Kernel modules the initrd must hold to reach the NFS server besides MODULES=netboot's Ethernet drivers (an emulated board's virtio NIC). The build checks the initrd for them and regenerates it with them where they are missing.",
    ),
  firmware: z
    .array(absPath)
    .default([])
    .describe(
      "Files of the root filesystem the board's own firmware loads before the kernel, served beside it (loader raspberrypi: the Pi 4's start4.elf and fixup4.dat).",
    ),
  panic: z
    .number()
    .int()
    .min(0)
    .max(3600)
    .default(10)
    .describe(
      'Seconds after a kernel panic before the board reboots (panic=N on the kernel command line); 0 waits forever. A panicked node with nobody at it would otherwise stay down.',
    ),
  append: z
    .array(z.string().regex(/^[^\s]+$/, 'must be one kernel argument without spaces'))
    .default([])
    .describe("Extra kernel arguments. Armbian's boot script is not read on a PXE boot, so what armbianEnv.txt would add goes here."),
});

const exportsSchema = z.strictObject({
  root: absPath.describe('Directory on the NFS server that holds one root filesystem per node.'),
  tftpRoot: absPath.describe('TFTP root on the boot server.'),
  firstExportId: z
    .number()
    .int()
    .min(1, "must be between 1 and 65535 (0 is Ganesha's pseudo root)")
    .max(65535, 'must be between 1 and 65535')
    .default(1)
    .describe(
      'Ganesha Export_Id of the first node; the others follow. Export_Ids must be unique on one NFS server: give each cluster that shares it its own range.',
    ),
});

const ssh = z.strictObject({
  user: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a user name: lower-case letters, digits, "_" or "-", starting with a letter or "_"')
    .default('root')
    .describe(
      'Who logs in with authorizedKeys: root (default) or another user, created on the node at boot (systemd-sysusers) in group sudo.',
    ),
  authorizedKeys: z
    .array(sshPublicKey)
    .default([])
    .describe(
      'SSH public keys that may log in as `user`. Password logins are off: without a key nobody can log in over SSH (the build warns).',
    ),
  rootPasswordHash: z
    .string()
    .regex(
      /^\$(1|5|6|y|gy|2[aby]|7)\$[^:\s]+$/,
      'must be a crypt(3) hash such as the output of `mkpasswd -m yescrypt` or `openssl passwd -6`',
    )
    .optional()
    .describe("Root's password for the console, as a crypt(3) hash. Without it root's password is locked (Armbian's image has root:1234)."),
});

const keepalived = z.strictObject({
  virtualRouterId: z
    .number()
    .int()
    .min(1, 'must be between 1 and 255')
    .max(255, 'must be between 1 and 255')
    .describe('VRRP virtual_router_id of the VIP, 1-255: unique among the VRRP groups on the LAN (the seed article uses 51).'),
  advertInterval: z
    .number()
    .int()
    .min(1)
    .max(255)
    .default(1)
    .describe(
      'Seconds between VRRP adverts of the VIP holder (advert_int; default 1). The backups take over after about 3 missed adverts.',
    ),
  checkInterval: z
    .number()
    .int()
    .min(1)
    .max(60)
    .default(2)
    .describe(
      "Seconds between keepalived's checks that this server's MariaDB is a synced member of the primary Galera component (it holds the VIP only then); two failed checks in a row move the VIP.",
    ),
  checkTimeout: z
    .number()
    .int()
    .min(2)
    .max(120)
    .default(4)
    .describe(
      'Seconds one check may take before it counts as failed. Raise it on slow or emulated boards, where starting the MariaDB client alone can take seconds.',
    ),
});

const galera = z.strictObject({
  clusterName: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be letters, digits, "_" or "-"')
    .describe('Galera wsrep_cluster_name, the same on every server: a server with another name is not let into the cluster.'),
  sstMethod: z
    .enum(['rsync', 'mariabackup'])
    .default('rsync')
    .describe(
      'How a joining server gets a full copy of the data (wsrep_sst_method; default rsync, through stunnel with TLS). mariabackup needs the mariadb-backup package in the base.',
    ),
  bootstrapNode: hostname.optional().describe('Server that creates the Galera cluster on the very first boot (default: the first server).'),
  allowUnsafeClusterSize: z
    .boolean()
    .default(false)
    .describe('Allow fewer than 3 or an even number of servers. Such a cluster loses quorum (or splits) when one node fails.'),
  recovery: z
    .strictObject({
      policy: z
        .enum(['majority', 'survivor'])
        .default('majority')
        .describe(
          'After the whole cluster lost power: majority (default) bootstraps only once more than half of the servers answer; ' +
            'survivor also lets the servers that answer bootstrap alone after survivorAfter seconds, at the risk of losing the writes of a server that never came back.',
        ),
      survivorAfter: z
        .number()
        .int()
        .min(30)
        .max(86_400)
        .default(600)
        .describe('With policy survivor: seconds to wait for a majority before bootstrapping without one.'),
      waitForAll: z
        .number()
        .int()
        .min(0)
        .max(86_400)
        .default(120)
        .describe(
          'Seconds a majority waits for the missing servers, which may hold newer writes, before it bootstraps from the most advanced server it sees.',
        ),
      port: z
        .number()
        .int()
        .min(1024)
        .max(65_535)
        .default(4570)
        .describe("TCP port of the servers' recovery exchange (authenticated with a generated key)."),
    })
    .default({ policy: 'majority', survivorAfter: 600, waitForAll: 120, port: 4570 })
    .describe('How the servers recover the Galera cluster by themselves after a restart or a power cut.'),
});

const k3s = z.strictObject({
  version: z
    .string()
    .regex(/^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$/, 'must be a k3s release such as v1.29.6+k3s1')
    .describe(
      'The k3s release the nodes run (v1.29.6+k3s1): downloaded once with its published sha256 unless binary or --k3s-binary gives one.',
    ),
  database: z
    .string()
    .regex(/^[A-Za-z0-9_]{1,64}$/, 'must be a MariaDB database name: letters, digits and "_"')
    .describe("MariaDB database that holds k3s's datastore (kine), created on the servers once Galera is primary."),
  user: z
    .string()
    .regex(/^[A-Za-z0-9_]{1,32}$/, 'must be a MariaDB user name: letters, digits and "_", at most 32 characters')
    .describe('MariaDB user k3s connects as, over TLS through the VIP; its password is generated into the secrets file.'),
  disable: z
    .array(z.string().regex(/^[a-z0-9-]+$/))
    .default([])
    .describe('Packaged components to disable on every server (local-storage is added when Longhorn is on).'),
  binary: z
    .string()
    .min(1)
    .optional()
    .describe(
      'A k3s binary to install at /usr/local/bin/k3s (relative to the profile); without it the release of `version` is downloaded once and checked against its published sha256.',
    ),
});

const longhorn = z.strictObject({
  enabled: z
    .boolean()
    .default(true)
    .describe('Install Longhorn (default true): its HelmChart on the servers, iscsid on every node, /var/lib/longhorn on local storage.'),
  version: z
    .string()
    .regex(/^v[0-9]+\.[0-9]+\.[0-9]+$/, 'must be a Longhorn release such as v1.6.0')
    .describe("Longhorn release (v1.6.0): the version of the Helm chart k3s's helm controller installs."),
  nodeDownPodDeletionPolicy: z
    .enum(LONGHORN_NODE_DOWN_POLICIES)
    .default('delete-both-statefulset-and-deployment-pod')
    .describe(
      "Longhorn's node-down-pod-deletion-policy: which pods on a node that is down Longhorn deletes so their volumes can attach elsewhere (default delete-both-statefulset-and-deployment-pod).",
    ),
  ui: z
    .strictObject({
      enabled: z
        .boolean()
        .default(false)
        .describe(
          "Serve the Longhorn UI at https://VIP/ through k3s's bundled Traefik, behind basic auth with a generated password (user longhorn; the password is longhornUiPassword in the secrets file). Off by default: the UI can delete volumes.",
        ),
    })
    .default({ enabled: false })
    .describe('The Longhorn UI: off unless enabled, and then only with the generated credentials.'),
  uiPort: z
    .unknown()
    .optional()
    .refine(
      (v) => v === undefined,
      "is no longer supported: it opened the UI to anyone on every node's IP; set longhorn.ui.enabled: true to serve it at https://VIP/ behind a generated password",
    )
    .describe('Removed (it exposed the UI unauthenticated); use ui.enabled.'),
});

const storage = z.strictObject({
  enabled: z
    .boolean()
    .default(true)
    .describe(
      'Local ext4 storage for /var/lib/rancher (and /var/lib/longhorn). containerd and Longhorn cannot keep their data on NFS; switch it off only where nodes cannot mount it, such as the container lab.',
    ),
  device: z
    .string()
    .regex(/^\/dev\/[A-Za-z0-9/_.-]+$/, 'must be a block device such as /dev/mmcblk0p3')
    .optional()
    .describe(
      'Local block device for /var/lib/rancher and /var/lib/longhorn. Formatted on first boot only if it holds no filesystem at all.',
    ),
  imageSize: size
    .default('16G')
    .describe("Without a device: size of the ext4 image file created on the node's own export and loop-mounted."),
  label: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,16}$/, 'must be an ext4 label: at most 16 letters, digits, "_" or "-"')
    .default('netroot-local')
    .describe(
      'Label of the local ext4 filesystem, given when it is created and used to mount it (default netroot-local, at most 16 characters).',
    ),
});

/**
 * The same keys, all optional and without defaults: what a node leaves out comes from the cluster's value,
 * not from the schema's default (`.partial()` keeps the defaults, so a node's `board: { console: … }` would
 * reset the cluster's `panic`).
 */
function overrides<S extends z.ZodObject>(schema: S): ReturnType<S['partial']> {
  const shape = Object.fromEntries(
    Object.entries(schema.shape).map(([key, field]) => {
      const inner = field instanceof z.ZodDefault ? (field.unwrap() as z.ZodType) : (field as z.ZodType);
      const described = field.description ? inner.optional().describe(field.description) : inner.optional();
      return [key, described];
    }),
  );
  return z.strictObject(shape) as unknown as ReturnType<S['partial']>;
}

/** What a single node may set for itself, overriding the cluster-level value. */
const node = z.strictObject({
  name: hostname.describe("The node's host name, also the name of its export directory and its Galera member name."),
  mac: mac.describe(
    "The MAC address of the node's boot NIC (U-Boot: printenv ethaddr): DHCP gives this MAC its IP and pxelinux.cfg/01-<mac>.",
  ),
  ip: ipv4.describe(
    "The node's fixed IPv4 address inside network.subnet, handed out by DHCP for its MAC; its NFS export is open to it alone.",
  ),
  serial: z
    .string()
    .regex(/^[0-9a-f]{8}$/, {
      error: (issue) => serialHint(issue.input),
    })
    .optional()
    .describe(
      "A Raspberry Pi's serial number, which names its TFTP directory: the last 8 hex digits of Serial in /proc/cpuinfo (or the bootloader's console), lower case, such as 9ffefdef. Needed for board loader raspberrypi.",
    ),
  roles: z
    .array(z.enum(ROLES))
    .min(1, 'needs at least one role: server or agent')
    .describe('server (keepalived, Galera, k3s server) or agent (k3s agent only). Galera needs an odd number of at least 3 servers.'),
  interface: ifname.optional().describe('Shorthand for network.interface on this node.'),
  network: z
    .strictObject({
      interface: ifname.optional().describe("This node's boot interface, instead of network.interface."),
      gateway: ipv4.optional().describe("This node's gateway, instead of network.gateway."),
      dns: z.array(ipv4).min(1).optional().describe("This node's DNS servers, instead of network.dns."),
      ntp: z.array(ntpServer).min(1).optional().describe("This node's NTP servers, instead of network.ntp (default: its gateway)."),
    })
    .optional()
    .describe('Network settings of this node that differ from the cluster-wide network (VIP, subnet and servers stay cluster-wide).'),
  ssh: z
    .strictObject({
      authorizedKeys: z
        .array(sshPublicKey)
        .optional()
        .describe("SSH public keys that may log in to this node as ssh.user, instead of the cluster's."),
    })
    .optional()
    .describe("This node's own authorizedKeys, instead of the cluster's."),
  board: overrides(board.omit({ preset: true }))
    .optional()
    .describe("This node's board keys over the cluster's board (a node of another kind, or another console)."),
  keepalived: z
    .strictObject({
      priority: z
        .number()
        .int()
        .min(1, 'must be between 1 and 254 (255 is reserved for the address owner)')
        .max(254, 'must be between 1 and 254 (255 is reserved for the address owner)')
        .describe('VRRP priority of this server, 1-254, unique (default: the first server 100 as MASTER, the others 50, 49, … as BACKUP).'),
    })
    .partial()
    .optional()
    .describe("This server's keepalived settings."),
  storage: overrides(storage)
    .optional()
    .describe("This node's local storage, over the cluster's storage (e.g. a device only this node has)."),
});

export const profileSchema = z
  .strictObject({
    extends: z.string().optional().describe('Another profile (name in the same directory, or a path) whose keys this one overrides.'),
    cluster: z
      .strictObject({
        name: hostname.describe(
          "The cluster's name: the build's directory (out/NAME), its secrets file (NAME.secrets.yaml) and its config files' names.",
        ),
      })
      .describe('Which cluster this is.'),
    base: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Base root filesystem the node trees are laid over: a directory, a .tar/.tar.gz/.tar.xz/.tar.zst, an .img/.img.xz disk image, or debootstrap:SUITE:ARCH[:pkg,pkg] (paths relative to the profile).',
      ),
    network: network.describe('The network the nodes boot on: their subnet, gateway, DNS, the VIP and the boot server.'),
    board: board.describe(
      'What the nodes are: a preset (board: orangepi-zero3), a preset with keys of its own (board: { preset: rock64, console: … }), or every key written out. board: NAME replaces an inherited board whole.',
    ),
    exports: exportsSchema.describe("Where the boot server keeps the nodes' NFS roots and the TFTP files."),
    nodes: z
      .array(node)
      .min(1, 'needs at least one node')
      .describe('The boards, one entry each: name, MAC, IP and roles, and what a node sets for itself.'),
    ssh: ssh
      .default({ user: 'root', authorizedKeys: [] })
      .describe('Who can log in to the nodes. Without authorizedKeys nobody can over SSH (the build warns and says how).'),
    keepalived: keepalived.describe('keepalived, which holds the VIP on a server whose Galera is synced and primary (VRRP).'),
    galera: galera.describe("MariaDB Galera on the servers: k3s's replicated datastore."),
    k3s: k3s.describe('k3s on every node: servers reach the datastore through the VIP, agents join the VIP on port 6443.'),
    longhorn: longhorn.describe("Longhorn, replicated volumes on the nodes' local storage, installed by k3s as a HelmChart."),
    storage: storage
      .default({ enabled: true, imageSize: '16G', label: 'netroot-local' })
      .describe('Local ext4 storage on every node for what cannot live on NFS: /var/lib/rancher, /var/lib/longhorn and container logs.'),
    persist: z
      .array(
        z
          .string()
          .regex(
            /^\/(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._@+/-]+$/,
            'must be an absolute path without "." or ".." parts, such as /var/lib/myapp',
          ),
      )
      .default([])
      .describe(
        "Paths in every node's root that a deploy never overwrites or deletes (seeded from the image once), besides /var/lib/mysql, /var/lib/rancher, /etc/rancher/node, /var/lib/longhorn, /var/lib/netroot and /var/log.",
      ),
  })
  .describe('netroot cluster profile');

export type Profile = z.output<typeof profileSchema>;
export type ProfileNode = Profile['nodes'][number];
export type StorageSettings = z.output<typeof storage>;
export type BoardSettings = z.output<typeof board>;

/** JSON Schema of what a user may write (defaults are optional), generated from the loader's schema. */
export function profileJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(profileSchema, { io: 'input' }) as Record<string, unknown>;
  // The loader takes `board: NAME` for a preset as it is (expandBoardPresets, before the schema):
  // editors should accept it too.
  const properties = schema.properties as Record<string, Record<string, unknown>>;
  const board = properties.board!;
  properties.board = {
    description: board.description,
    anyOf: [{ type: 'string', enum: BOARD_PRESET_NAMES, description: 'A board preset, as it is' }, board],
  };
  return { ...schema, title: 'netroot profile' };
}
