/** The chat's messages and unread count as a reducer (vitest covers it); the wire format of a
 * chat message on the `chat` data topic. */

export const CHAT_TOPIC = "chat";
export const MAX_CHAT_LENGTH = 2000;
const KEPT = 500;

export interface ChatMessage {
  id: string;
  identity: string;
  name: string;
  text: string;
  at: number;
  isLocal: boolean;
}

export interface ChatState {
  messages: ChatMessage[];
  unread: number;
  open: boolean;
}

export type ChatAction = { type: "received"; message: ChatMessage } | { type: "opened" } | { type: "closed" };

export const initialChat: ChatState = { messages: [], unread: 0, open: false };

export function chatReducer(state: ChatState, action: ChatAction): ChatState {
  switch (action.type) {
    case "received": {
      if (state.messages.some((message) => message.id === action.message.id)) return state;
      const messages = [...state.messages, action.message].slice(-KEPT);
      return { ...state, messages, unread: state.open || action.message.isLocal ? state.unread : state.unread + 1 };
    }
    case "opened":
      return { ...state, open: true, unread: 0 };
    case "closed":
      return { ...state, open: false };
  }
}

/** The payload sent on the `chat` topic. */
export function encodeChat(id: string, text: string): string {
  return JSON.stringify({ id, text: text.slice(0, MAX_CHAT_LENGTH) });
}

/** A received payload, or null when it is not a chat message. */
export function decodeChat(payload: Uint8Array): { id: string; text: string } | null {
  try {
    const value = JSON.parse(new TextDecoder().decode(payload)) as unknown;
    if (typeof value !== "object" || value === null) return null;
    const { id, text } = value as Record<string, unknown>;
    if (typeof id !== "string" || typeof text !== "string" || !text.trim()) return null;
    return { id, text: text.slice(0, MAX_CHAT_LENGTH) };
  } catch {
    return null;
  }
}
