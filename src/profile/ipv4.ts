/** Small IPv4 arithmetic for subnet checks; inputs are already validated by the schema. */

export function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export interface Subnet {
  network: number;
  prefix: number;
  broadcast: number;
}

export function parseCidr(cidr: string): Subnet {
  const [ip, bits] = cidr.split('/');
  const prefix = Number(bits);
  const size = 2 ** (32 - prefix);
  const network = Math.floor(ipToInt(ip!) / size) * size;
  return { network, prefix, broadcast: network + size - 1 };
}

export function inSubnet(ip: string, subnet: Subnet): boolean {
  const n = ipToInt(ip);
  return n >= subnet.network && n <= subnet.broadcast;
}

/** A usable host address: inside the subnet and neither its network nor its broadcast address. */
export function isHostAddress(ip: string, subnet: Subnet): boolean {
  const n = ipToInt(ip);
  if (subnet.prefix >= 31) return inSubnet(ip, subnet);
  return n > subnet.network && n < subnet.broadcast;
}

/** The mask in dotted form, as dnsmasq and the kernel's ip= want it. */
export function netmask(subnet: Subnet): string {
  const mask = subnet.prefix === 0 ? 0 : (0xffffffff << (32 - subnet.prefix)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (mask >>> shift) & 255).join('.');
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}
