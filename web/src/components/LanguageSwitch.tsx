import { Button, Label, ListBox, ListBoxItem, Popover, Select, SelectValue } from "react-aria-components";
import { LANGUAGES, useI18n, type Language } from "../i18n";

const NAMES: Record<Language, string> = { en: "English", fr: "Français" };

/** The language switch (the choice is kept in this browser). */
export function LanguageSwitch() {
  const { language, setLanguage, t } = useI18n();
  return (
    <Select
      className="select compact"
      selectedKey={language}
      onSelectionChange={(key) => setLanguage(key as Language)}
      aria-label={t("lang.label")}
    >
      <Label className="visually-hidden">{t("lang.label")}</Label>
      <Button className="select-button">
        <SelectValue />
        <span aria-hidden="true">▾</span>
      </Button>
      <Popover className="popover">
        <ListBox className="listbox">
          {LANGUAGES.map((code) => (
            <ListBoxItem key={code} id={code} className="listbox-item" lang={code}>
              {NAMES[code]}
            </ListBoxItem>
          ))}
        </ListBox>
      </Popover>
    </Select>
  );
}
