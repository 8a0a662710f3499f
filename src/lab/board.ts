/**
 * An emulated arm64 board: `qemu-system-aarch64 -M virt` with Debian's
 * U-Boot as its firmware, its NIC a tap device in the node's namespace,
 * bridged to the node's cable on the lab bridge, with the node's MAC. Nothing
 * is handed to it but the firmware: it finds its address, its pxelinux file,
 * kernel and initrd, and its root over NFS from the lab's boot server, as a
 * board on a shelf would.
 *
 * The serial console is the board's only voice: every line is kept with the
 * time it arrived (console-N.log in the node's lab directory, one per boot),
 * and the lab drives U-Boot's prompt through it.
 */
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { startTool, type RunningTool } from '../tools.js';
import type { Cleanup } from './cleanup.js';
import { LabError } from './errors.js';
import { inNetArgs, run } from './run-command.js';
import type { LabNode } from './topology.js';

export const UBOOT_ARM64 = '/usr/lib/u-boot/qemu_arm64/u-boot.bin';

export interface BoardOptions {
  /** The lab's directory for this node: console logs. */
  workDir: string;
  memoryMb?: number;
}

export interface ConsoleLine {
  /** Milliseconds since this boot's power-on. */
  at: number;
  text: string;
}

/** What a wait on the console found: the line that matched, or why it stopped. */
export type ConsoleMatch =
  | { ok: true; line: ConsoleLine; match: RegExpExecArray }
  | { ok: false; reason: 'timeout' | 'failure' | 'powered off'; line?: ConsoleLine };

const TAP = 'tap0';
const NODE_BRIDGE = 'board0';

export class EmulatedBoard {
  readonly node: LabNode;
  private readonly options: Required<BoardOptions>;
  private qemu: RunningTool | undefined;
  private log: WriteStream | undefined;
  private wired = false;
  private boots = 0;
  private poweredOnAt = 0;
  private pending = '';
  /** Lines of the current boot. */
  lines: ConsoleLine[] = [];
  private waiters = new Set<() => void>();

  constructor(node: LabNode, options: BoardOptions) {
    this.node = node;
    this.options = { memoryMb: 1024, ...options, workDir: path.resolve(options.workDir) };
  }

  get consoleLog(): string {
    return path.join(this.options.workDir, `console-${this.boots}.log`);
  }

  get running(): boolean {
    return this.qemu !== undefined && this.qemu.child.exitCode === null && !this.qemu.child.killed;
  }

  /**
   * The node's namespace gets a bridge joining its cable to a tap device: the
   * board's frames go onto the lab bridge with the board's own MAC, and the
   * cable end gives its MAC up (two ports with one MAC would confuse the
   * bridge). The namespace itself speaks no IPv6, so it sends nothing of its own.
   */
  private async wire(): Promise<void> {
    if (this.wired) return;
    const { ns, interface: cable } = this.node;
    const ip = (args: string[]): Promise<string> => run('ip', ['-n', ns, ...args], { timeoutMs: 10_000 });
    await run('nsenter', inNetArgs(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']));
    await ip(['addr', 'flush', 'dev', cable]);
    await ip(['link', 'set', cable, 'down']);
    await ip(['link', 'set', cable, 'address', cableMac(this.node.mac)]);
    await ip(['link', 'add', NODE_BRIDGE, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    await ip(['link', 'set', NODE_BRIDGE, 'type', 'bridge', 'mcast_snooping', '0']);
    await ip(['tuntap', 'add', 'dev', TAP, 'mode', 'tap']);
    await ip(['link', 'set', cable, 'master', NODE_BRIDGE]);
    await ip(['link', 'set', TAP, 'master', NODE_BRIDGE]);
    for (const link of [cable, TAP, NODE_BRIDGE]) await ip(['link', 'set', link, 'up']);
    // The tap and the bridge go when the lab deletes the namespace.
    this.wired = true;
  }

  /** Power on: the firmware starts and the console is read from its first byte. */
  async powerOn(cleanup: Cleanup): Promise<void> {
    if (this.running) throw new LabError(`${this.node.name} is already on`);
    if (!existsSync(UBOOT_ARM64)) throw new LabError(`${UBOOT_ARM64} is missing: install u-boot-qemu (scripts/install-lab-deps.sh)`);
    await this.wire();
    await mkdir(this.options.workDir, { recursive: true });
    this.boots += 1;
    this.lines = [];
    this.pending = '';
    this.log = createWriteStream(this.consoleLog);
    this.poweredOnAt = Date.now();
    const args = [
      '-M',
      'virt',
      '-cpu',
      'cortex-a57',
      '-smp',
      '1',
      '-m',
      String(this.options.memoryMb),
      '-nodefaults',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-bios',
      UBOOT_ARM64,
      '-netdev',
      `tap,id=net0,ifname=${TAP},script=no,downscript=no`,
      '-device',
      `virtio-net-device,netdev=net0,mac=${this.node.mac}`,
      // Entropy for the kernel's random pool: without it sshd and MariaDB may wait minutes on an emulated CPU.
      '-device',
      'virtio-rng-device',
      // A panic ends the board (panic=N would reboot it): the lab sees it stop instead of looping.
      '-no-reboot',
    ];
    const qemu = startTool('nsenter', inNetArgs(this.node.ns, 'qemu-system-aarch64', args), {
      stdin: 'pipe',
      streamStdout: true,
      streamStderr: true,
    });
    this.qemu = qemu;
    const onData = (chunk: Buffer): void => this.receive(chunk.toString('utf8'));
    qemu.child.stdout?.on('data', onData);
    qemu.child.stderr?.on('data', (chunk: Buffer) => this.receive(`[qemu] ${chunk.toString('utf8')}`));
    void qemu.child.then(() => {
      this.receive('\n');
      this.wake();
    });
    cleanup.add(`${this.node.name}'s board`, () => this.powerOff());
  }

  /** Pull the plug: the emulator is killed at once, as power would be. */
  async powerOff(): Promise<void> {
    const qemu = this.qemu;
    if (!qemu) return;
    this.qemu = undefined;
    await qemu.stop(5_000, 'SIGKILL');
    this.log?.end();
    this.wake();
  }

  /** Type on the console. */
  send(text: string): void {
    if (!this.running) throw new LabError(`${this.node.name} is off: cannot type on its console`);
    this.qemu!.child.stdin!.write(text);
  }

  private receive(text: string): void {
    this.log?.write(text);
    const parts = (this.pending + text.replace(/\r/g, '')).split('\n');
    this.pending = parts.pop() ?? '';
    const at = Date.now() - this.poweredOnAt;
    for (const part of parts) this.lines.push({ at, text: part });
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** The text after the last complete line (a prompt that ends without a newline). */
  get partial(): string {
    return this.pending;
  }

  /**
   * Waits (bounded) for a console line that matches `pattern`, looking from
   * line `from` on; a line that matches a `failure` pattern first ends the
   * wait, as does the board stopping.
   */
  async waitFor(
    pattern: RegExp,
    options: { from?: number; timeoutMs: number; failures?: RegExp[]; partial?: boolean },
  ): Promise<ConsoleMatch & { index: number }> {
    const deadline = Date.now() + options.timeoutMs;
    let index = options.from ?? 0;
    for (;;) {
      for (; index < this.lines.length; index++) {
        const line = this.lines[index]!;
        const match = pattern.exec(line.text);
        if (match) return { ok: true, line, match, index };
        if (options.failures?.some((f) => f.test(line.text))) return { ok: false, reason: 'failure', line, index };
      }
      if (options.partial) {
        const match = pattern.exec(this.pending);
        if (match) return { ok: true, line: { at: Date.now() - this.poweredOnAt, text: this.pending }, match, index };
      }
      if (!this.running) return { ok: false, reason: 'powered off', index };
      const left = deadline - Date.now();
      if (left <= 0) return { ok: false, reason: 'timeout', index };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 1_000));
        const waiters = this.waiters;
        function done(): void {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  /** The console's last lines, for a failure report. */
  tail(count = 15): string {
    return [...this.lines.slice(-count).map((l) => l.text), ...(this.pending ? [this.pending] : [])].join('\n');
  }
}

/** The cable end's own MAC: the board's with another locally administered first octet. */
export function cableMac(mac: string): string {
  const octets = mac.split(':');
  octets[0] = (((parseInt(octets[0]!, 16) ^ 0x04) | 0x02) & 0xfe).toString(16).padStart(2, '0');
  return octets.join(':');
}
