/**
 * Board presets: where a board's kernel, initrd and device tree sit in its
 * root filesystem, its serial console, and what its initrd must carry to reach
 * the NFS server, so that a profile says `board: orangepi-zero3` instead of
 * four paths. `board: { preset: NAME, KEY: … }` overrides a preset key by key.
 *
 * A board written out with a preset's name (`board: { name: rock64, kernel: … }`)
 * is that preset with its own keys over it, as `preset: rock64` would be: the
 * keys it leaves out (rock64's console at 1.5 Mbaud, its device tree) come from
 * the preset, not from the schema's defaults. This is decided here alone.
 *
 * Most boards boot through U-Boot, which reads a pxelinux file. A Raspberry Pi 4 or 5
 * boots from the bootloader in its EEPROM, which reads no pxelinux file: it asks
 * DHCP for the "Raspberry Pi Boot" PXE service, then fetches its firmware,
 * config.txt, cmdline.txt, device tree, kernel and initramfs from a TFTP
 * directory named after the board's serial number (raspberrypi/documentation,
 * computers/raspberry-pi/eeprom-bootloader.adoc: TFTP_PREFIX, PXE_OPTION43;
 * boot-net.adoc: option 43). Those boards say `loader: raspberrypi`.
 */

/** How a board finds its kernel on the network: U-Boot's pxelinux file, or the Raspberry Pi EEPROM bootloader's serial-number directory. */
export const BOARD_LOADERS = ['u-boot', 'raspberrypi'] as const;
export type BoardLoader = (typeof BOARD_LOADERS)[number];

export interface BoardPreset {
  name: string;
  loader?: BoardLoader;
  kernel: string;
  initrd: string;
  /** Absent where the firmware passes its own device tree (QEMU virt). */
  fdt?: string;
  console: string;
  /** Modules the initrd must hold beyond MODULES=netboot's Ethernet drivers. */
  modules?: string[];
  /** Kernel arguments the board needs. */
  append?: string[];
  /** Files of the base the board's own firmware loads before the kernel (a Raspberry Pi's start4.elf), served beside it. */
  firmware?: string[];
  /** One line for `build-images boards` and the schema. */
  about: string;
}

export const BOARD_PRESETS = {
  // Armbian bookworm for the H618: its kernel and uInitrd under /boot, the Allwinner device tree.
  'orangepi-zero3': {
    name: 'orangepi-zero3',
    kernel: '/boot/Image',
    initrd: '/boot/uInitrd',
    fdt: '/boot/dtb/allwinner/sun50i-h618-orangepi-zero3.dtb',
    console: 'ttyS0,115200',
    about: 'Orange Pi Zero 3 (Allwinner H618) with Armbian',
  },
  // Rockchip's debug UART runs at 1.5 Mbaud and is the third one.
  rock64: {
    name: 'rock64',
    kernel: '/boot/Image',
    initrd: '/boot/uInitrd',
    fdt: '/boot/dtb/rockchip/rk3328-rock64.dtb',
    console: 'ttyS2,1500000',
    about: 'Pine64 Rock64 (Rockchip RK3328) with Armbian',
  },
  // Debian's arm64 kernel is a plain Image that U-Boot boots as is; QEMU's virt machine hands
  // U-Boot its own device tree; its NIC is virtio over MMIO, outside drivers/net/ethernet.
  'qemu-virt-arm64': {
    name: 'qemu-virt-arm64',
    kernel: '/vmlinuz',
    initrd: '/initrd.img',
    console: 'ttyAMA0',
    modules: ['virtio_net', 'virtio_mmio', 'net_failover', 'failover'],
    // An emulated CPU runs udev's first pass and the daemons' starts many times slower than a
    // board: systemd's default 90 s for a device or a start would fail units that are only slow.
    append: ['systemd.default_timeout_start_sec=600'],
    about: "QEMU's emulated arm64 board (qemu-system-aarch64 -M virt) with Debian's kernel",
  },
  // Debian on the Pi 4: raspi-firmware installs the GPU firmware under /usr/lib/raspi-firmware and its
  // kernel hook copies linux-image-arm64's device trees to /boot/firmware; Debian's console there is
  // the mini UART, ttyS1 (Debian's raspi image-specs). The bootloader loads start4.elf and fixup4.dat,
  // which read config.txt, the device tree, cmdline.txt, the kernel and the initramfs.
  'raspberrypi-4': {
    name: 'raspberrypi-4',
    loader: 'raspberrypi',
    kernel: '/vmlinuz',
    initrd: '/initrd.img',
    fdt: '/boot/firmware/bcm2711-rpi-4-b.dtb',
    firmware: ['/usr/lib/raspi-firmware/start4.elf', '/usr/lib/raspi-firmware/fixup4.dat'],
    console: 'ttyS1,115200',
    about: 'Raspberry Pi 4 Model B with Debian (raspi-firmware, linux-image-arm64), booted by its EEPROM bootloader',
  },
  // Raspberry Pi OS on the Pi 5: its bootloader holds the firmware (no start*.elf is loaded) and reads
  // config.txt, the device tree, cmdline.txt, kernel_2712.img and initramfs_2712 from /boot/firmware's
  // files; the debug UART connector is ttyAMA10. start4.elf is served too: the bootloader keeps the
  // serial-number directory only where it finds a start4.elf or start.elf in it (TFTP_PREFIX).
  'raspberrypi-5': {
    name: 'raspberrypi-5',
    loader: 'raspberrypi',
    kernel: '/boot/firmware/kernel_2712.img',
    initrd: '/boot/firmware/initramfs_2712',
    fdt: '/boot/firmware/bcm2712-rpi-5-b.dtb',
    firmware: ['/boot/firmware/start4.elf'],
    console: 'ttyAMA10,115200',
    about: 'Raspberry Pi 5 with Raspberry Pi OS (its /boot/firmware files), booted by its EEPROM bootloader',
  },
} satisfies Record<string, BoardPreset>;

export type BoardPresetName = keyof typeof BOARD_PRESETS;
export const BOARD_PRESET_NAMES = Object.keys(BOARD_PRESETS) as BoardPresetName[];

export function isBoardPreset(name: unknown): name is BoardPresetName {
  return typeof name === 'string' && Object.hasOwn(BOARD_PRESETS, name);
}

/** The board settings a preset stands for, without its description. */
export function presetSettings(name: BoardPresetName): Record<string, unknown> {
  const { about: _about, ...settings } = BOARD_PRESETS[name] as BoardPreset;
  return { preset: name, ...settings };
}

export interface PresetProblem {
  /** Key path of the offending value, from the profile's root. */
  path: (string | number)[];
  message: string;
}

/**
 * Replace `board: NAME` and `board: { preset: NAME, … }` in a plain profile
 * with the full settings (the profile's own keys win). Returns what is wrong
 * with a preset name; an unknown one is left for nobody to guess at.
 */
export function expandBoardPresets(profile: Record<string, unknown>): PresetProblem[] {
  const board = profile.board;
  const known = BOARD_PRESET_NAMES.join(', ');
  if (typeof board === 'string') {
    if (!isBoardPreset(board))
      return [
        {
          path: ['board'],
          message: `"${board}" is not a board netroot knows; use one of: ${known}, or write the board out as { name, kernel, initrd, fdt, console }`,
        },
      ];
    profile.board = presetSettings(board);
    return [];
  }
  if (
    board &&
    typeof board === 'object' &&
    !Array.isArray(board) &&
    !('preset' in board) &&
    isBoardPreset((board as Record<string, unknown>).name)
  ) {
    const own = board as Record<string, unknown>;
    profile.board = { ...presetSettings(own.name as BoardPresetName), ...own };
    return [];
  }
  if (board && typeof board === 'object' && !Array.isArray(board) && 'preset' in board) {
    const { preset, ...own } = board as Record<string, unknown>;
    if (!isBoardPreset(preset))
      return [{ path: ['board', 'preset'], message: `${JSON.stringify(preset)} is not a board netroot knows; use one of: ${known}` }];
    profile.board = { ...presetSettings(preset), ...own };
  }
  return [];
}
