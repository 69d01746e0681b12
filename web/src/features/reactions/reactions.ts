/** Reactions: a few emoji sent on the `reaction` data topic, shown floating for a moment. */
export const REACTION_TOPIC = "reaction";
export const REACTIONS = ["👍", "👏", "😂", "❤️", "🎉", "😮"] as const;
export type Reaction = (typeof REACTIONS)[number];

export function decodeReaction(payload: Uint8Array): Reaction | null {
  const text = new TextDecoder().decode(payload);
  return (REACTIONS as readonly string[]).includes(text) ? (text as Reaction) : null;
}
