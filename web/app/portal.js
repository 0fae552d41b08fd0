// porthole's pages: live progress of the job acting on a VM. A section with data-job
// polls the job, shows its step and progress, and reloads the page when it finishes (or
// goes to data-done, e.g. after a delete; or, with data-stay, says so and stays, when the
// page shows something to read first); a failure is shown as the job reports it.

for (const section of document.querySelectorAll('[data-job]')) {
  followJob(section);
}

async function followJob(section) {
  const step = section.querySelector('.job-step');
  const bar = section.querySelector('.job-progress');
  const error = section.querySelector('.job-error');
  for (;;) {
    let job;
    try {
      const response = await fetch(`/api/v1/jobs/${section.dataset.job}`, { credentials: 'same-origin' });
      job = await response.json();
      if (!response.ok) throw new Error(job.error?.message || response.statusText);
    } catch (e) {
      step.textContent = `cannot follow the job: ${e.message}; retrying`;
      await sleep(2000);
      continue;
    }
    step.textContent = job.step || job.state;
    bar.value = job.progress;
    if (job.state === 'succeeded') {
      section.dataset.state = 'succeeded';
      if (section.dataset.stay !== undefined) {
        step.textContent = 'done: it is running';
      } else if (section.dataset.done) {
        window.location.assign(section.dataset.done);
      } else {
        window.location.reload();
      }
      return;
    }
    if (job.state === 'failed') {
      section.dataset.state = 'failed';
      error.hidden = false;
      error.textContent = `Failed: ${job.error}`;
      step.textContent = 'failed';
      return;
    }
    await sleep(700);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
