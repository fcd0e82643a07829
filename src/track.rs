//! Track: the same physical coin across frames, so the actuator is told once per coin.
//!
//! An overhead camera sees a coin in many frames. Each coin gets a track with a stable id; the
//! classifier's probabilities of every frame it is seen in are summed into a vote, and the
//! track yields one [`Verdict`] when the vote is confident or when the coin leaves the view.
//! The scene is static or moves as a conveyor with a known velocity; detections are matched to
//! the tracks' predicted centres, nearest first, within a gate of a fraction of a radius.

use anyhow::{Result, ensure};

/// How tracks are matched, and when a track gives its verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackParams {
    /// Direction the scene moves in, degrees: 0 is image right, 90 image down.
    pub direction_deg: f64,
    /// Speed of the scene in image pixels per second; 0 for a static scene.
    pub speed: f64,
    /// A detection continues a track when its centre lies within `gate` track radii of the
    /// track's predicted centre. Coins cannot overlap, so centres of two coins are at least
    /// two radii apart and any gate below one radius cannot swap them.
    pub gate: f64,
    /// Frames a coin may go unseen (a missed detection) before it counts as gone.
    pub max_missed: u32,
    /// Frames a coin must be seen in before its vote may count as confident.
    pub commit_frames: u32,
    /// Mean probability of the leading class at which the vote is confident.
    pub commit_confidence: f64,
    /// Fewest frames a coin must be seen in to get a verdict at all: a coin seen once is more
    /// likely a false detection than a coin.
    pub min_frames: u32,
}

/// The defaults: a static scene, a 0.75-radius gate, 3 missed frames, a verdict after 3 frames
/// at 0.8 mean probability or on leaving, none for a coin seen in one frame only.
pub const DEFAULT_TRACK: TrackParams = TrackParams {
    direction_deg: 0.0,
    speed: 0.0,
    gate: 0.75,
    max_missed: 3,
    commit_frames: 3,
    commit_confidence: 0.8,
    min_frames: 2,
};

impl TrackParams {
    /// The scene's velocity in pixels per second, `(x right, y down)`.
    pub fn velocity(&self) -> (f64, f64) {
        let a = self.direction_deg.to_radians();
        (self.speed * a.cos(), self.speed * a.sin())
    }

    /// Refuses settings that cannot work; errors name the parameter and value.
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.speed.is_finite() && (0.0..=1e6).contains(&self.speed),
            "conveyor_speed {} px/s must be in 0..1e6",
            self.speed
        );
        ensure!(
            self.direction_deg.is_finite(),
            "conveyor_direction_deg {} must be finite",
            self.direction_deg
        );
        ensure!(
            self.gate > 0.0 && self.gate <= 2.0,
            "track_gate {} must be in (0, 2] radii",
            self.gate
        );
        ensure!(self.max_missed <= 1000, "track_max_missed {} is over 1000", self.max_missed);
        ensure!(self.min_frames >= 1, "track_min_frames {} must be at least 1", self.min_frames);
        ensure!(
            self.commit_frames >= self.min_frames,
            "track_commit_frames {} must be at least track_min_frames {}",
            self.commit_frames,
            self.min_frames
        );
        ensure!(
            (0.0..=1.0).contains(&self.commit_confidence),
            "track_commit_confidence {} is outside 0..1",
            self.commit_confidence
        );
        Ok(())
    }
}

/// One coin as the classifier saw it in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Centre and radius in source-image pixels.
    pub x: f32,
    pub y: f32,
    pub r: f32,
    /// Class probabilities, in label order.
    pub probs: Vec<f32>,
    /// Whether the shift monitor found this crop unlike the training data.
    pub out_of_distribution: bool,
}

/// Why a track gave its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The vote reached the commit confidence after enough frames.
    Confident,
    /// The coin left the view (or went unseen too long) before that.
    Left,
    /// The stream ended ([`Tracker::finish`]).
    Finished,
}

/// The one decision about a physical coin.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The track's id: the `coin_id` of every detection of this coin.
    pub id: u32,
    /// Leading class of the summed probabilities.
    pub class: usize,
    /// Mean probability of that class over the frames seen.
    pub confidence: f32,
    /// Frames the coin was seen in.
    pub frames: u32,
    /// Frames in which the shift monitor flagged it.
    pub out_of_distribution_frames: u32,
    /// Last seen centre and radius, and the stamp of that frame in nanoseconds.
    pub x: f32,
    pub y: f32,
    pub r: f32,
    pub stamp_ns: i64,
    pub reason: Reason,
}

impl Verdict {
    /// Whether most of the frames found the coin unlike the training data.
    pub fn out_of_distribution(&self) -> bool {
        2 * self.out_of_distribution_frames > self.frames
    }
}

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    x: f32,
    y: f32,
    r: f32,
    stamp_ns: i64,
    frames: u32,
    missed: u32,
    votes: Vec<f64>,
    ood_frames: u32,
    decided: bool,
}

impl Track {
    fn leader(&self) -> (usize, f32) {
        let (class, sum) = self
            .votes
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or((0, 0.0), |(i, v)| (i, *v));
        (class, (sum / f64::from(self.frames.max(1))) as f32)
    }

    fn verdict(&self, reason: Reason) -> Verdict {
        let (class, confidence) = self.leader();
        Verdict {
            id: self.id,
            class,
            confidence,
            frames: self.frames,
            out_of_distribution_frames: self.ood_frames,
            x: self.x,
            y: self.y,
            r: self.r,
            stamp_ns: self.stamp_ns,
            reason,
        }
    }

    /// Centre predicted at `stamp_ns` from the last sighting and the scene velocity. Time
    /// running backwards (a replay restarting) predicts no motion.
    fn predicted(&self, stamp_ns: i64, velocity: (f64, f64)) -> (f64, f64) {
        let dt = (stamp_ns.saturating_sub(self.stamp_ns)).max(0) as f64 * 1e-9;
        (f64::from(self.x) + velocity.0 * dt, f64::from(self.y) + velocity.1 * dt)
    }
}

/// What one frame did to the tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameTracks {
    /// The track id of each observation, in observation order.
    pub ids: Vec<u32>,
    /// Verdicts given in this frame.
    pub verdicts: Vec<Verdict>,
}

/// The live tracks of one stream. Invariant: ids increase and are never reused within one
/// tracker; each track gives at most one verdict.
#[derive(Debug, Clone)]
pub struct Tracker {
    params: TrackParams,
    tracks: Vec<Track>,
    next_id: u32,
}

impl Tracker {
    /// A tracker with no tracks; fails on settings [`TrackParams::check`] refuses.
    pub fn new(params: TrackParams) -> Result<Self> {
        params.check()?;
        Ok(Self { params, tracks: Vec::new(), next_id: 1 })
    }

    /// The settings in use.
    pub fn params(&self) -> &TrackParams {
        &self.params
    }

    /// Changes the settings from the next frame on, keeping the live tracks; fails (and keeps
    /// the old settings) on settings [`TrackParams::check`] refuses.
    pub fn set_params(&mut self, params: TrackParams) -> Result<()> {
        params.check()?;
        self.params = params;
        Ok(())
    }

    /// Live tracks (coins in view or recently seen).
    pub fn live(&self) -> usize {
        self.tracks.len()
    }

    /// Takes one frame's observations, stamped `stamp_ns`, in an image of `width`×`height`.
    pub fn update(
        &mut self,
        stamp_ns: i64,
        width: u32,
        height: u32,
        observations: &[Observation],
    ) -> FrameTracks {
        let v = self.params.velocity();
        let mut pairs = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            let (px, py) = track.predicted(stamp_ns, v);
            let gate = self.params.gate * f64::from(track.r);
            for (o, obs) in observations.iter().enumerate() {
                let d = (f64::from(obs.x) - px).hypot(f64::from(obs.y) - py);
                if d <= gate {
                    pairs.push((d, t, o));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut track_of = vec![None; observations.len()];
        let mut matched = vec![false; self.tracks.len()];
        for (_, t, o) in pairs {
            if !matched[t] && track_of[o].is_none() {
                matched[t] = true;
                track_of[o] = Some(t);
            }
        }
        let mut verdicts = Vec::new();
        for (o, t) in track_of.iter().enumerate() {
            if let Some(t) = *t {
                let obs = &observations[o];
                let track = &mut self.tracks[t];
                track.x = obs.x;
                track.y = obs.y;
                track.r = obs.r;
                track.stamp_ns = stamp_ns;
                track.frames += 1;
                track.missed = 0;
                track.ood_frames += u32::from(obs.out_of_distribution);
                for (sum, p) in track.votes.iter_mut().zip(&obs.probs) {
                    *sum += f64::from(*p);
                }
            }
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (t, mut track) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if !matched[t] {
                track.missed += 1;
                let (px, py) = track.predicted(stamp_ns, v);
                let r = f64::from(track.r);
                let outside = px < -r || py < -r || px > w + r || py > h + r;
                if track.missed > self.params.max_missed || outside {
                    if !track.decided && track.frames >= self.params.min_frames {
                        verdicts.push(track.verdict(Reason::Left));
                    }
                    continue;
                }
            }
            kept.push((t, track));
        }
        let mut index_of = vec![None; matched.len()];
        self.tracks = kept
            .into_iter()
            .enumerate()
            .map(|(new, (old, track))| {
                index_of[old] = Some(new);
                track
            })
            .collect();
        let mut ids = Vec::with_capacity(observations.len());
        for (o, t) in track_of.into_iter().enumerate() {
            match t.and_then(|t| index_of[t]) {
                Some(i) => ids.push(self.tracks[i].id),
                None => {
                    let obs = &observations[o];
                    let id = self.allocate_id();
                    self.tracks.push(Track {
                        id,
                        x: obs.x,
                        y: obs.y,
                        r: obs.r,
                        stamp_ns,
                        frames: 1,
                        missed: 0,
                        votes: obs.probs.iter().map(|&p| f64::from(p)).collect(),
                        ood_frames: u32::from(obs.out_of_distribution),
                        decided: false,
                    });
                    ids.push(id);
                }
            }
        }
        for track in &mut self.tracks {
            if track.decided || track.frames < self.params.commit_frames || track.missed > 0 {
                continue;
            }
            let (_, confidence) = track.leader();
            if f64::from(confidence) >= self.params.commit_confidence {
                track.decided = true;
                verdicts.push(track.verdict(Reason::Confident));
            }
        }
        FrameTracks { ids, verdicts }
    }

    /// Ends the stream: verdicts for every live undecided track seen often enough.
    pub fn finish(&mut self) -> Vec<Verdict> {
        let min = self.params.min_frames;
        std::mem::take(&mut self.tracks)
            .into_iter()
            .filter(|t| !t.decided && t.frames >= min)
            .map(|t| t.verdict(Reason::Finished))
            .collect()
    }

    fn allocate_id(&mut self) -> u32 {
        let id = self.next_id;
        // Wrapping after four billion coins skips 0, which reads as "no id" to some consumers.
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(x: f32, y: f32, probs: [f32; 2]) -> Observation {
        Observation { x, y, r: 20.0, probs: probs.to_vec(), out_of_distribution: false }
    }

    const MS: i64 = 1_000_000;

    #[test]
    fn a_static_coin_keeps_its_id_and_is_decided_once() {
        let mut t = Tracker::new(DEFAULT_TRACK).unwrap();
        let mut all = Vec::new();
        for f in 0..6 {
            let step =
                t.update(f * 100 * MS, 640, 480, &[obs(100.0 + f as f32, 100.0, [0.9, 0.1])]);
            assert_eq!(step.ids, vec![1]);
            all.extend(step.verdicts);
        }
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].id, all[0].class, all[0].frames), (1, 0, 3));
        assert_eq!(all[0].reason, Reason::Confident);
        assert!(t.finish().is_empty(), "a decided coin is not decided again");
    }

    #[test]
    fn an_unsure_coin_is_decided_when_it_leaves_and_a_single_sighting_never() {
        let mut t = Tracker::new(DEFAULT_TRACK).unwrap();
        t.update(0, 640, 480, &[obs(100.0, 100.0, [0.4, 0.6]), obs(400.0, 400.0, [1.0, 0.0])]);
        t.update(100 * MS, 640, 480, &[obs(101.0, 100.0, [0.7, 0.3])]);
        let mut verdicts = Vec::new();
        for f in 2..7 {
            verdicts.extend(t.update(f * 100 * MS, 640, 480, &[]).verdicts);
        }
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        let v = &verdicts[0];
        assert_eq!((v.id, v.class, v.frames, v.reason), (1, 0, 2, Reason::Left));
        assert!((v.confidence - 0.55).abs() < 1e-6);
        assert_eq!(t.live(), 0);
        let next = t.update(800 * MS, 640, 480, &[obs(100.0, 100.0, [1.0, 0.0])]);
        assert_eq!(next.ids, vec![3], "ids are never reused");
    }

    #[test]
    fn conveyor_motion_is_predicted_and_leaving_the_view_ends_the_track() {
        let p = TrackParams { speed: 300.0, commit_confidence: 1.0, ..DEFAULT_TRACK };
        let mut t = Tracker::new(p).unwrap();
        // 30 px per 100 ms frame: beyond the 15 px gate unless the motion is predicted.
        let mut verdicts = Vec::new();
        for f in 0..4 {
            let x = 560.0 + 30.0 * f as f32;
            let step = t.update(f * 100 * MS, 640, 480, &[obs(x, 200.0, [0.2, 0.8])]);
            assert_eq!(step.ids, vec![1], "frame {f}");
            verdicts.extend(step.verdicts);
        }
        assert!(verdicts.is_empty());
        // Next frame the coin is predicted at x = 680: outside the 640 px image by a radius.
        let step = t.update(400 * MS, 640, 480, &[]);
        assert_eq!(step.verdicts.len(), 1);
        assert_eq!((step.verdicts[0].class, step.verdicts[0].reason), (1, Reason::Left));
    }

    #[test]
    fn bad_settings_name_the_parameter() {
        let bad = TrackParams { gate: 0.0, ..DEFAULT_TRACK };
        assert!(Tracker::new(bad).unwrap_err().to_string().contains("track_gate"));
        let bad = TrackParams { commit_frames: 1, ..DEFAULT_TRACK };
        assert!(Tracker::new(bad).unwrap_err().to_string().contains("track_commit_frames"));
        let bad = TrackParams { speed: f64::NAN, ..DEFAULT_TRACK };
        assert!(Tracker::new(bad).unwrap_err().to_string().contains("conveyor_speed"));
    }
}
