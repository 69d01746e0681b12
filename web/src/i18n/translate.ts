/** The i18n layer's logic, free of React so vitest covers it: language choice and formatting. */
import { en, type MessageKey } from "./en";
import { fr } from "./fr";

export const LANGUAGES = ["en", "fr"] as const;
export type Language = (typeof LANGUAGES)[number];
export const CATALOGS: Record<Language, Record<MessageKey, string>> = { en, fr };
export const STORAGE_KEY = "parley.language";

/** The first of the browser's preferred languages that Parley speaks (`fr-CA` → `fr`), else English. */
export function pickLanguage(stored: string | null, preferred: readonly string[]): Language {
  if (stored && (LANGUAGES as readonly string[]).includes(stored)) return stored as Language;
  for (const tag of preferred) {
    const base = tag.toLowerCase().split("-")[0];
    const found = LANGUAGES.find((language) => language === base);
    if (found) return found;
  }
  return "en";
}

/** The message in `language` with each `{name}` replaced; unknown placeholders stay visible. */
export function translate(language: Language, key: MessageKey, values: Record<string, string | number> = {}): string {
  const template = CATALOGS[language][key] ?? en[key];
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => (name in values ? String(values[name]) : whole));
}
