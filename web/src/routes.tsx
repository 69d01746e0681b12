/** Every route of the app, in one place. */
import { Route, Switch } from "wouter";
import { HomePage } from "./features/home/HomePage";
import { MeetingPage } from "./features/meeting/MeetingPage";
import { RecordingsPage } from "./features/recording/RecordingsPage";
import { Header } from "./components/Header";

export function Routes() {
  return (
    <Switch>
      <Route path="/">{() => <HomePage />}</Route>
      <Route path="/r/:slug/recordings">{(params) => <RecordingsPage slug={params.slug.toLowerCase()} />}</Route>
      <Route path="/r/:slug">{(params) => <MeetingPage key={params.slug} slug={params.slug.toLowerCase()} />}</Route>
      <Route>
        {() => (
          <div className="page">
            <Header />
            <main className="ended" id="main">
              <h1>404</h1>
            </main>
          </div>
        )}
      </Route>
    </Switch>
  );
}
