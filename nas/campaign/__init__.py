"""The campaign layer: the only place that knows spaces, controllers, latency and training
together. :mod:`nas.campaign.config` reads a campaign, :mod:`nas.campaign.driver` runs it
(proposals from a controller, evaluations on Ray through :mod:`nas.campaign.evaluate`, rewards
from :mod:`nas.campaign.reward`), :mod:`nas.campaign.study` and :mod:`nas.campaign.rundir` keep
it, and :mod:`nas.campaign.results`, :mod:`nas.campaign.export`, :mod:`nas.campaign.plots` and
:mod:`nas.campaign.references` show it."""
