import { describe, expect, it } from "vitest";
import { en } from "../src/i18n/en";
import { fr } from "../src/i18n/fr";
import { pickLanguage, translate } from "../src/i18n/translate";

describe("language choice", () => {
  it("keeps a stored choice", () => expect(pickLanguage("fr", ["en-US"])).toBe("fr"));
  it("takes the first language Parley speaks from the browser's", () => expect(pickLanguage(null, ["de-DE", "fr-CA", "en"])).toBe("fr"));
  it("falls back to English", () => expect(pickLanguage("xx", ["de", "ja"])).toBe("en"));
});

describe("translate", () => {
  it("fills placeholders", () => expect(translate("fr", "meeting.joined", { name: "Ada" })).toBe("Ada a rejoint"));
  it("leaves unknown placeholders visible", () => expect(translate("en", "meeting.joined")).toBe("{name} joined"));
  it("has the same placeholders in both languages", () => {
    const names = (text: string) => [...text.matchAll(/\{(\w+)\}/g)].map((match) => match[1]).sort();
    for (const key of Object.keys(en) as Array<keyof typeof en>) expect(names(fr[key]), key).toEqual(names(en[key]));
  });
});
