/** Keyboard shortcuts of the meeting (vitest covers the matching). Ctrl or ⌘ with a letter, as
 * La Suite Meet and others do, so that typing in the chat never triggers them; `?` opens help. */
export type ShortcutAction = "mic" | "cam" | "hand" | "chat" | "participants" | "help";

export interface KeyInput {
  key: string;
  ctrlKey: boolean;
  metaKey: boolean;
  altKey: boolean;
  shiftKey: boolean;
  /** Focus is in a text field: plain keys belong to it. */
  typing: boolean;
}

export const SHORTCUTS: ReadonlyArray<{ action: ShortcutAction; keys: string }> = [
  { action: "mic", keys: "Ctrl+D" },
  { action: "cam", keys: "Ctrl+E" },
  { action: "hand", keys: "Ctrl+Alt+H" },
  { action: "chat", keys: "Ctrl+Alt+C" },
  { action: "participants", keys: "Ctrl+Alt+P" },
  { action: "help", keys: "?" },
];

export function shortcutFor(input: KeyInput): ShortcutAction | null {
  const mod = input.ctrlKey || input.metaKey;
  const key = input.key.toLowerCase();
  if (mod && !input.altKey && !input.shiftKey) {
    if (key === "d") return "mic";
    if (key === "e") return "cam";
  }
  if (mod && input.altKey) {
    if (key === "h") return "hand";
    if (key === "c") return "chat";
    if (key === "p") return "participants";
  }
  if (!mod && !input.altKey && input.key === "?" && !input.typing) return "help";
  return null;
}
