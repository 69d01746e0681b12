/** Layout maths, free of React and WebRTC (vitest covers it): the grid's shape and tile order. */

export interface GridShape {
  cols: number;
  rows: number;
  tileWidth: number;
  tileHeight: number;
}

/** The columns and rows that give `count` tiles of `aspect` (width / height) the largest size
 * in a `width` × `height` area, with `gap` pixels between them. */
export function gridShape(count: number, width: number, height: number, aspect = 16 / 9, gap = 8): GridShape {
  if (count <= 0 || width <= 0 || height <= 0) return { cols: 1, rows: 1, tileWidth: Math.max(width, 0), tileHeight: Math.max(height, 0) };
  let best: GridShape = { cols: 1, rows: count, tileWidth: 0, tileHeight: 0 };
  for (let cols = 1; cols <= count; cols++) {
    const rows = Math.ceil(count / cols);
    const cellWidth = (width - gap * (cols - 1)) / cols;
    const cellHeight = (height - gap * (rows - 1)) / rows;
    const tileWidth = Math.min(cellWidth, cellHeight * aspect);
    if (tileWidth > best.tileWidth) best = { cols, rows, tileWidth, tileHeight: tileWidth / aspect };
  }
  return best;
}

/** What the layout needs to know of a tile. */
export interface TileKey {
  key: string;
  identity: string;
  kind: "camera" | "screen";
  isLocal: boolean;
}

/** The grid's order: screen shares first (they carry the content), then the local participant,
 * then the others in the order they came. */
export function gridOrder<T extends TileKey>(tiles: readonly T[]): T[] {
  const rank = (tile: T) => (tile.kind === "screen" ? 0 : tile.isLocal ? 1 : 2);
  return tiles.map((tile, index) => ({ tile, index })).sort((a, b) => rank(a.tile) - rank(b.tile) || a.index - b.index).map(({ tile }) => tile);
}

/** The speaker layout: one tile on stage, the rest in a strip. The stage is the pinned tile,
 * else the newest screen share, else the loudest remote speaker, else the first remote tile. */
export function speakerLayout<T extends TileKey>(
  tiles: readonly T[],
  { pinned, speakers }: { pinned: string | null; speakers: readonly string[] },
): { stage: T | undefined; strip: T[] } {
  const stage =
    tiles.find((tile) => tile.key === pinned) ??
    [...tiles].reverse().find((tile) => tile.kind === "screen") ??
    speakers.map((identity) => tiles.find((tile) => tile.identity === identity && tile.kind === "camera" && !tile.isLocal)).find(Boolean) ??
    tiles.find((tile) => !tile.isLocal) ??
    tiles[0];
  return { stage, strip: gridOrder(tiles.filter((tile) => tile !== stage)) };
}

/** Up to two initials of a name, for a tile without video. */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0]![0], words[words.length - 1]![0]] : [...(words[0] ?? "?")].slice(0, 2);
  return letters.join("").toUpperCase();
}
